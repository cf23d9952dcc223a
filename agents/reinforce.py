"""REINFORCE without a baseline, tabular softmax policy: ``000`` sections 3.1.3.2 and 7.1.2
(Williams, 1992).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.base import Episode
from agents.persistence import register
from agents.tabular import TabularAgent


@register
@dataclass(eq=False)
class Reinforce(TabularAgent):
    """Softmax policy over a table of preferences ``theta[t, d, a]`` per (task, depth).

    ``pi(a | s) = exp(theta[s, a]) / sum_{b allowed} exp(theta[s, b])`` over the actions
    allowed in ``s``. For every decision ``i`` of a finished route, in state ``s`` with action
    ``a`` and return ``R_i = r_final + sum_{j>=i} gamma^(j-i) r_j``, one gradient step on
    ``- log pi(a | s) R_i`` (``000`` 7.1.2; the update of 3.1.3.2 with ``g_t = R_i``)::

        theta[s] <- theta[s] + lr * R_i * grad log pi(a | s)
                  = theta[s] + lr * R_i * (onehot(a) - pi(. | s))

    No baseline: the step's size and sign follow the raw return, so with only positive rewards
    every taken action is reinforced. Masked actions have ``pi = 0`` and their preferences do
    not move.

    Arguments: those of :class:`~agents.tabular.TabularAgent` (``lr``: of the preferences).
    """

    state_names = ("theta",)

    def init_learned_state(self) -> None:
        """The preferences start at 0 (a uniform policy)."""
        self.theta = np.zeros((self.num_tasks, self.max_depth, self.num_actions))

    def behaviour(self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``pi(. | s)``: the softmax of ``theta[s]`` over the allowed actions."""
        theta = np.where(masks, self.theta[tasks, depths], -np.inf)
        weights = np.exp(theta - theta.max(axis=1, keepdims=True))  # shifted against overflow
        return weights / weights.sum(axis=1, keepdims=True)

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``theta[s]``: greedy mode takes the most probable allowed action."""
        return self.theta[tasks, depths]

    # ------------------------------------------------------------------ learning

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order.

        A decision reads and writes only its own state's preferences, so the ``k``-th visits
        of all the states are applied together (:meth:`~TabularAgent.visits`).

        :param episodes: finished routes, oldest first.
        """
        for t, d, a, ret, masks in self.visits(episodes):
            grad_log_pi = -self.behaviour(t, d, masks)  # - pi(. | s) ...
            grad_log_pi[np.arange(len(a)), a] += 1.0  # ... + onehot(a)
            self.theta[t, d] += self.lr * ret[:, None] * grad_log_pi  # theta += lr R grad log pi
