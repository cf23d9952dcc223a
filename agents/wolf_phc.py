"""Win or Learn Fast Policy Hill-Climbing (WoLF-PHC), tabular: M. Bowling and M. Veloso,
"Multiagent learning using a variable learning rate", Artificial Intelligence 136(2), 2002,
section 4 (Table 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agents.base import Episode
from agents.persistence import register
from agents.tabular import TabularAgent, bootstrapped_targets, restrict


@register
@dataclass(eq=False, kw_only=True)
class WoLFPHC(TabularAgent):
    """WoLF policy hill-climbing with tables per (task, depth): a multi-agent baseline for WPL.

    The agent keeps Q-values ``Q[s, a]``, a policy ``pi[s]``, the running average of its past
    policies ``pibar[s]`` and a visit count ``C[s]``. After each decision (state ``s``, action
    ``a``, reward ``r``, next state ``s'``, in route order):

    1. Q-learning: ``Q(s, a) <- Q(s, a) + lr (r + gamma max_{a' allowed in s'} Q(s', a') -
       Q(s, a))``; the target is ``r`` after the route's last decision.
    2. ``C(s) <- C(s) + 1``; ``pibar(s) <- pibar(s) + (pi(s) - pibar(s)) / C(s)``.
    3. The agent is *winning* when its current policy would earn more, by its own Q-values,
       than its average policy: ``sum_a pi(s, a) Q(s, a) > sum_a pibar(s, a) Q(s, a)``. It then
       moves cautiously, with step ``delta = delta_win``; otherwise it is losing and moves fast,
       ``delta = delta_lose > delta_win`` ("win or learn fast").
    4. Hill-climbing: each allowed non-greedy action gives up ``min(pi(s, b), delta / (n - 1))``
       of its probability (``n`` allowed actions) and the greedy action ``argmax_a Q(s, a)``
       (lowest index on ties) receives the sum, so ``pi(s)`` stays a distribution.

    The variable step makes self-play of PHC, which on its own circles around mixed
    equilibria, converge to them in games such as matching pennies. Acting samples ``pi(s)``
    mixed with ``epsilon`` uniform exploration (the paper's "suitable exploration"); greedy mode
    takes the most probable action of ``pi(s)``.

    The policy steps must be small against the Q-values' learning rate, so that the greedy
    action reflects the opponent's current policy rather than noise or stale values; and some
    exploration keeps the values of rarely played actions fresh. Measured in matching pennies
    self-play (20,000 plays, started at ``P(action 0) = 0.9 / 0.2``): with ``lr=0.1``,
    ``delta_win=0.001``, ``delta_lose=0.002-0.004``, ``epsilon=0.05`` (the defaults) the
    policies settle within 0.06-0.08 of ``(1/2, 1/2)`` on average; with ``lr=0.01`` (values
    lag behind) or ``delta_win=0.005, delta_lose=0.02`` (steps larger than the values' noise
    allows) they keep cycling near pure strategies. In Shapley's game, where Abdallah & Lesser
    (JAIR 2008) report that earlier multi-agent learners fail to converge, they cycle near the
    boundary with the defaults (30,000 plays).

    As in :class:`agents.wpl.WPL`, masked actions keep their entries: steps 3-4 run on ``pi``
    and ``pibar`` restricted to the allowed actions and renormalised, and write ``pi`` back
    scaled to the allowed actions' share.

    Arguments: those of :class:`~agents.tabular.TabularAgent` (``lr`` is ``alpha``, of the
    Q-values; ``gamma`` discounts the Q-learning target), and, by keyword only:

    :param delta_win: policy step when winning.
    :param delta_lose: policy step when losing; must exceed ``delta_win``.
    :param epsilon: probability of acting uniformly at random among the allowed actions.
    """

    delta_win: float = 0.001
    delta_lose: float = 0.004
    epsilon: float = 0.05

    state_names = ("q", "pi", "pibar", "counts")

    def init_learned_state(self) -> None:
        """Check the steps; ``Q`` starts at 0, ``pi`` and ``pibar`` uniform, no visits."""
        if not 0.0 < self.delta_win < self.delta_lose:
            raise ValueError(
                "WoLF needs 0 < delta_win < delta_lose, got "
                f"{self.delta_win} and {self.delta_lose}"
            )
        shape = (self.num_tasks, self.max_depth, self.num_actions)
        self.q = np.zeros(shape)
        self.pi = np.full(shape, 1.0 / self.num_actions)
        self.pibar = self.pi.copy()
        self.counts = np.zeros((self.num_tasks, self.max_depth), dtype=np.int64)

    def behaviour(self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``pi(s)`` restricted to the allowed actions, mixed with ``epsilon`` uniform."""
        pi = restrict(self.pi[tasks, depths], masks)
        uniform = masks / masks.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * pi + self.epsilon * uniform

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``pi(s)``: greedy mode takes the most probable allowed action."""
        return self.pi[tasks, depths]

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> None:
        """Not reported (``None``): exploration squashing leaves WoLF-PHC's routes unscaled."""
        return None

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply steps 1-4 to every decision of one finished route, in order (:meth:`learn_batch`:
        route by route, each bootstrapping from the Q-values the earlier ones left).

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        tasks, depths, actions, masks = self.route_decisions(episode)
        targets = bootstrapped_targets(self.q, tasks, depths, masks, episode.rewards, self.gamma)
        for t, d, a, target, allowed in zip(tasks, depths, actions, targets, masks, strict=True):
            # 1. Q-learning; a route's last decision is terminal
            self.q[t, d, a] += self.lr * (target - self.q[t, d, a])
            # 2. average policy
            self.counts[t, d] += 1
            self.pibar[t, d] += (self.pi[t, d] - self.pibar[t, d]) / self.counts[t, d]
            if allowed.sum() == 1:
                continue  # a lone allowed action has nowhere to climb
            q = self.q[t, d, allowed]
            share = self.pi[t, d, allowed].sum()
            pi = restrict(self.pi[t, d][None], allowed[None])[0, allowed]
            pibar = restrict(self.pibar[t, d][None], allowed[None])[0, allowed]
            # 3. win or learn fast: winning if pi earns more than pibar against Q
            delta = self.delta_win if pi @ q > pibar @ q else self.delta_lose
            # 4. every other action gives up to delta / (n - 1) to the greedy action
            give = np.minimum(pi, delta / (len(q) - 1))
            greedy = np.argmax(q)
            give[greedy] = 0.0
            pi -= give
            pi[greedy] += give.sum()
            self.pi[t, d, allowed] = pi * share
