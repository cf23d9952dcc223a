"""Advantage learning, Monte Carlo, tabular: ``000`` section 7.1.2, eq. 7.1-7.2 (after Baird's
advantage updating, 1993).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.base import Episode
from agents.persistence import register
from agents.tabular import EpsilonGreedyTabular


@register
@dataclass(eq=False)
class AdvantageLearning(EpsilonGreedyTabular):
    """Separate tables for the state value ``V[t, d]`` and the advantage ``A[t, d, a]``.

    For every decision ``i`` of a finished route, in state ``s = (t, d)`` with action ``a`` and
    Monte Carlo return ``R_i = r_final + sum_{j>=i} gamma^(j-i) r_j``::

        V(s)    <- V(s)    + lr * (R_i - V(s))                 # 000 eq. 7.1
        A(s, a) <- A(s, a) + lr * (R_i - V(s) - A(s, a))       # 000 eq. 7.2

    The two equations are one simultaneous update: ``V(s)`` in eq. 7.2 is the value before
    eq. 7.1 moves it, so ``A(s, a)`` tracks ``E[R | s, a] - V(s)``. (Reading eq. 7.2 after
    eq. 7.1 would shrink every advantage by ``1 - lr``.) Eq. 7.2 prints ``A(s_t)`` as the first
    term of its right-hand side; the table is per action, so it is ``A(s_t, a_t)``. The seed
    writes the return undiscounted, the default ``gamma = 1``.

    Acting is epsilon-greedy on ``A`` (``000`` eq. 3.3,
    :class:`~agents.tabular.EpsilonGreedyTabular`); greedy mode takes the largest allowed
    advantage.

    Arguments: those of :class:`~agents.tabular.EpsilonGreedyTabular` (``lr`` is ``alpha``, of
    both tables).
    """

    state_names = ("v", "a", "episodes_seen")

    def init_learned_state(self) -> None:
        """``V`` and ``A`` start at 0."""
        self.v = np.zeros((self.num_tasks, self.max_depth))
        self.a = np.zeros((self.num_tasks, self.max_depth, self.num_actions))
        self.episodes_seen = np.zeros((), dtype=np.int64)

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``A(s, .)``."""
        return self.a[tasks, depths]

    # ------------------------------------------------------------------ learning

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order.

        A decision reads and writes only its own state's entries, so the ``k``-th visits of all
        the states are applied together (:meth:`~TabularAgent.visits`).

        :param episodes: finished routes, oldest first.
        """
        for t, d, a, ret, _ in self.visits(episodes):
            advantage = ret - self.v[t, d]  # R_i - V(s), with V before eq. 7.1's update
            self.v[t, d] += self.lr * advantage  # eq. 7.1
            self.a[t, d, a] += self.lr * (advantage - self.a[t, d, a])  # eq. 7.2
        self.episodes_seen += len(episodes)
