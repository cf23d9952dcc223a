"""Tabular Q-learning with epsilon-greedy exploration: ``000`` eq. 3.2-3.3 (Watkins, 1989)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.base import Episode
from agents.persistence import register
from agents.tabular import EpsilonGreedyTabular, bootstrapped_targets


@register
@dataclass(eq=False)
class QLearning(EpsilonGreedyTabular):
    """Q-learning on a table ``Q[t, d, a]`` per (task, depth), acting epsilon-greedily.

    After each decision ``i`` (state ``s = (t, d)``, action ``a``, reward ``r_i``, next state
    ``s'`` = the next decision's ``(t, d)``), ``000`` eq. 3.2::

        Q(s, a) <- Q(s, a) + lr * (r_i + gamma * max_{a' allowed in s'} Q(s', a') - Q(s, a))

    with the target ``r_i`` alone after the route's last decision. The actions allowed in
    ``s'`` come from the next decision's ``info["action_mask"]`` (all actions without one).
    Decisions are learned in route order, so each bootstraps from the next state's value before
    that state's own update. Rewards are taken as paid (``episode.rewards``, the last holding
    the final reward): bootstrapping discounts the final reward by ``gamma`` per step, unlike
    the Monte Carlo returns of the policy-gradient agents; the two agree at the default
    ``gamma = 1``.

    Acting, ``000`` eq. 3.3, is epsilon-greedy on ``Q``
    (:class:`~agents.tabular.EpsilonGreedyTabular`): among the ``n`` allowed actions the greedy
    one (ties broken at random, as the seed says; tables start all tied) has probability
    ``1 - epsilon`` and each other one ``epsilon / (n - 1)``; epsilon can anneal linearly.
    Greedy mode takes the allowed action with the largest value, the lowest index on ties.

    Arguments: those of :class:`~agents.tabular.EpsilonGreedyTabular` (``lr`` is ``alpha``).
    """

    state_names = ("q", "episodes_seen")

    def init_learned_state(self) -> None:
        """``Q`` starts at 0 everywhere (all actions tied)."""
        self.q = np.zeros((self.num_tasks, self.max_depth, self.num_actions))
        self.episodes_seen = np.zeros((), dtype=np.int64)

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``Q(s, .)``."""
        return self.q[tasks, depths]

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply eq. 3.2 to every decision of one finished route (:meth:`learn_batch`: route by
        route, each bootstrapping from the table the earlier ones left).

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        tasks, depths, actions, masks = self.route_decisions(episode)
        targets = bootstrapped_targets(self.q, tasks, depths, masks, episode.rewards, self.gamma)
        taken = self.q[tasks, depths, actions]
        self.q[tasks, depths, actions] = taken + self.lr * (targets - taken)  # eq. 3.2
        self.episodes_seen += 1
