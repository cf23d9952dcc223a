"""REINFORCE without a baseline, tabular softmax policy: ``000`` sections 3.1.3.2 and 7.1.2
(Williams, 1992).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.base import Agent, Episode
from agents.persistence import register
from agents.tabular import (
    as_masks,
    check_indices,
    decision_masks,
    decisions,
    sample,
    table_non_greedy,
    visit_groups,
)


@register
class Reinforce(Agent):
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

    :param num_tasks: number of task ids.
    :param max_depth: number of decisions per route (depths ``0 .. max_depth - 1``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate of the preferences.
    :param seed: seed of the agent's own random stream.
    :param gamma: discount of the intermediate rewards in the return.
    """

    state_names = ("theta",)

    def __init__(
        self,
        num_tasks: int,
        max_depth: int,
        num_actions: int,
        lr: float = 0.1,
        seed: int | None = None,
        gamma: float = 1.0,
    ) -> None:
        super().__init__(seed)
        self._remember(
            num_tasks=num_tasks, max_depth=max_depth, num_actions=num_actions, lr=lr, gamma=gamma
        )
        self.num_tasks, self.max_depth, self.num_actions = num_tasks, max_depth, num_actions
        self.lr, self.gamma = lr, gamma
        self.theta = np.zeros((num_tasks, max_depth, num_actions))

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
        probabilities = self._probabilities(
            np.asarray(obs["task"]), np.asarray(obs["depth"]), as_masks(masks)
        )
        if self.greedy:
            return np.argmax(probabilities, axis=1)
        return sample(self.rng, probabilities)

    def _probabilities(
        self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray
    ) -> np.ndarray:
        check_indices((tasks, depths), self.theta.shape[:2])
        theta = np.where(masks, self.theta[tasks, depths], -np.inf)
        weights = np.exp(theta - theta.max(axis=1, keepdims=True))  # shifted against overflow
        return weights / weights.sum(axis=1, keepdims=True)

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Whether each action was taken non-greedily (``000`` 7.4.2): below the largest
        probability of the policy in its state.

        :param obs: stacked observations (``task``, ``depth``).
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :param actions: the actions taken, shape ``(B,)``.
        :return: booleans, shape ``(B,)``.
        """
        return table_non_greedy(self.theta, obs, masks, actions)

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply the REINFORCE step to every decision of one finished route.

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        self.learn_batch([episode])

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order.

        A decision reads and writes only its own state's preferences, so the ``k``-th visits
        of all the states are independent: they are applied together, ``k`` by ``k``.

        :param episodes: finished routes, oldest first.
        """
        if not episodes:
            return
        tasks, depths, actions, returns = decisions(episodes, self.gamma)
        masks = decision_masks(episodes, self.num_actions)
        check_indices((tasks, depths, actions), self.theta.shape)
        for now in visit_groups(tasks * self.max_depth + depths):
            t, d, a, ret = tasks[now], depths[now], actions[now], returns[now]
            grad_log_pi = -self._probabilities(t, d, masks[now])  # - pi(. | s) ...
            grad_log_pi[np.arange(len(a)), a] += 1.0  # ... + onehot(a)
            self.theta[t, d] += self.lr * ret[:, None] * grad_log_pi  # theta += lr R grad log pi
