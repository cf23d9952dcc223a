"""Win or Learn Fast Policy Hill-Climbing (WoLF-PHC), tabular: M. Bowling and M. Veloso,
"Multiagent learning using a variable learning rate", Artificial Intelligence 136(2), 2002,
section 4 (Table 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.base import Agent, Episode
from agents.persistence import register
from agents.tabular import as_masks, check_indices, decision_masks, restrict, sample


@register
class WoLFPHC(Agent):
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

    :param num_tasks: number of task ids.
    :param max_depth: number of decisions per route (depths ``0 .. max_depth - 1``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate ``alpha`` of the Q-values.
    :param seed: seed of the agent's own random stream.
    :param delta_win: policy step when winning.
    :param delta_lose: policy step when losing; must exceed ``delta_win``.
    :param gamma: discount factor of the Q-learning target.
    :param epsilon: probability of acting uniformly at random among the allowed actions.
    """

    state_names = ("q", "pi", "pibar", "counts")

    def __init__(
        self,
        num_tasks: int,
        max_depth: int,
        num_actions: int,
        lr: float = 0.1,
        seed: int | None = None,
        delta_win: float = 0.001,
        delta_lose: float = 0.004,
        gamma: float = 1.0,
        epsilon: float = 0.05,
    ) -> None:
        super().__init__(seed)
        if not 0.0 < delta_win < delta_lose:
            raise ValueError(
                f"WoLF needs 0 < delta_win < delta_lose, got {delta_win} and {delta_lose}"
            )
        self._remember(
            num_tasks=num_tasks,
            max_depth=max_depth,
            num_actions=num_actions,
            lr=lr,
            delta_win=delta_win,
            delta_lose=delta_lose,
            gamma=gamma,
            epsilon=epsilon,
        )
        self.num_tasks, self.max_depth, self.num_actions = num_tasks, max_depth, num_actions
        self.lr, self.delta_win, self.delta_lose = lr, delta_win, delta_lose
        self.gamma, self.epsilon = gamma, epsilon
        self.q = np.zeros((num_tasks, max_depth, num_actions))
        self.pi = np.full((num_tasks, max_depth, num_actions), 1.0 / num_actions)
        self.pibar = self.pi.copy()
        self.counts = np.zeros((num_tasks, max_depth), dtype=np.int64)

    # ------------------------------------------------------------------ acting

    def policy(self, task: int, depth: int, mask: np.ndarray | None = None) -> np.ndarray:
        """The distribution :meth:`act` samples from in state ``(task, depth)``.

        :param task: task id.
        :param depth: decision depth.
        :param mask: allowed actions (default: all).
        :return: probabilities, shape ``(num_actions,)``.
        """
        masks = as_masks(np.ones(self.num_actions) if mask is None else mask)
        return self._probabilities(np.array([task]), np.array([depth]), masks)[0]

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """Sample an allowed action; the most probable one (lowest index on ties) when greedy.

        :param obs: the observation; only ``obs["task"]`` and ``obs["depth"]`` are used.
        :param info: holds ``action_mask``.
        :return: the action.
        """
        batch = {"task": np.array([obs["task"]]), "depth": np.array([obs["depth"]])}
        return int(self.act_batch(batch, info["action_mask"])[0])

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """One action per row, as :meth:`act`, without a loop over the rows.

        :param obs: stacked observations; only ``obs["task"]`` and ``obs["depth"]`` (shape
            ``(B,)``) are used.
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :return: actions, shape ``(B,)``.
        """
        masks = as_masks(masks)
        tasks, depths = np.asarray(obs["task"]), np.asarray(obs["depth"])
        if self.greedy:
            check_indices((tasks, depths), self.pi.shape[:2])
            return np.argmax(restrict(self.pi[tasks, depths], masks), axis=1)
        return sample(self.rng, self._probabilities(tasks, depths, masks))

    def _probabilities(
        self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray
    ) -> np.ndarray:
        check_indices((tasks, depths), self.pi.shape[:2])
        pi = restrict(self.pi[tasks, depths], masks)
        uniform = masks / masks.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * pi + self.epsilon * uniform

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply steps 1-4 to every decision of one finished route, in order.

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        tasks = np.array([obs["task"] for obs in episode.observations], dtype=np.int64)
        depths = np.array([obs["depth"] for obs in episode.observations], dtype=np.int64)
        actions = np.array(episode.actions, dtype=np.int64)
        check_indices((tasks, depths, actions), self.q.shape)
        masks = decision_masks([episode], self.num_actions)
        last = len(episode) - 1
        for i, (t, d, a, r) in enumerate(zip(tasks, depths, actions, episode.rewards, strict=True)):
            # 1. Q-learning; a route's last decision is terminal
            target = r
            if i < last:
                target += self.gamma * self.q[tasks[i + 1], depths[i + 1], masks[i + 1]].max()
            self.q[t, d, a] += self.lr * (target - self.q[t, d, a])
            # 2. average policy
            self.counts[t, d] += 1
            self.pibar[t, d] += (self.pi[t, d] - self.pibar[t, d]) / self.counts[t, d]
            allowed = masks[i]
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

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same as :meth:`learn` on each route in order (Q-learning bootstraps from the table
        the earlier routes left, so routes are not merged).

        :param episodes: finished routes, oldest first.
        """
        for episode in episodes:
            self.learn(episode)
