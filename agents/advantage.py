"""Advantage learning, Monte Carlo, tabular: ``000`` section 7.1.2, eq. 7.1-7.2 (after Baird's
advantage updating, 1993).
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
    decisions,
    epsilon_greedy,
    sample,
    table_non_greedy,
    visit_groups,
)


@register
class AdvantageLearning(Agent):
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

    Acting is epsilon-greedy on ``A`` (``000`` eq. 3.3): the allowed action with the largest
    advantage (ties broken at random) has probability ``1 - epsilon``, each of the other ``n - 1``
    allowed actions ``epsilon / (n - 1)``; epsilon can anneal linearly. Greedy mode takes the
    largest allowed advantage, the lowest index on ties.

    :param num_tasks: number of task ids.
    :param max_depth: number of decisions per route (depths ``0 .. max_depth - 1``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate ``alpha`` of both tables.
    :param seed: seed of the agent's own random stream.
    :param gamma: discount of the intermediate rewards in the return.
    :param epsilon: exploration rate (the start of the schedule when annealing).
    :param epsilon_final: exploration rate reached after ``epsilon_decay_episodes`` learned
        routes (linear); ``None`` keeps ``epsilon`` constant.
    :param epsilon_decay_episodes: length of the schedule, in learned routes.
    """

    state_names = ("v", "a", "episodes_seen")

    def __init__(
        self,
        num_tasks: int,
        max_depth: int,
        num_actions: int,
        lr: float = 0.1,
        seed: int | None = None,
        gamma: float = 1.0,
        epsilon: float = 0.1,
        epsilon_final: float | None = None,
        epsilon_decay_episodes: int = 0,
    ) -> None:
        super().__init__(seed)
        self._remember(
            num_tasks=num_tasks,
            max_depth=max_depth,
            num_actions=num_actions,
            lr=lr,
            gamma=gamma,
            epsilon=epsilon,
            epsilon_final=epsilon_final,
            epsilon_decay_episodes=epsilon_decay_episodes,
        )
        self.num_tasks, self.max_depth, self.num_actions = num_tasks, max_depth, num_actions
        self.lr, self.gamma = lr, gamma
        self.epsilon_start, self.epsilon_final = epsilon, epsilon_final
        self.epsilon_decay_episodes = epsilon_decay_episodes
        self.v = np.zeros((num_tasks, max_depth))
        self.a = np.zeros((num_tasks, max_depth, num_actions))
        self.episodes_seen = np.zeros((), dtype=np.int64)

    @property
    def epsilon(self) -> float:
        """The current exploration rate (linear from ``epsilon`` to ``epsilon_final``)."""
        if self.epsilon_final is None or self.epsilon_decay_episodes <= 0:
            return self.epsilon_start
        progress = min(1.0, int(self.episodes_seen) / self.epsilon_decay_episodes)
        return self.epsilon_start + progress * (self.epsilon_final - self.epsilon_start)

    # ------------------------------------------------------------------ acting

    def policy(self, task: int, depth: int, mask: np.ndarray | None = None) -> np.ndarray:
        """The epsilon-greedy distribution :meth:`act` samples from in state ``(task, depth)``.

        :param task: task id.
        :param depth: decision depth.
        :param mask: allowed actions (default: all).
        :return: probabilities, shape ``(num_actions,)``.
        """
        masks = as_masks(np.ones(self.num_actions) if mask is None else mask)
        tasks, depths = np.array([task]), np.array([depth])
        check_indices((tasks, depths), self.v.shape)
        return epsilon_greedy(self.a[tasks, depths], masks, self.epsilon)[0]

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """An epsilon-greedy allowed action; the largest advantage when greedy.

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
        check_indices((tasks, depths), self.v.shape)
        advantages = self.a[tasks, depths]
        if self.greedy:
            return np.argmax(np.where(masks, advantages, -np.inf), axis=1)
        return sample(self.rng, epsilon_greedy(advantages, masks, self.epsilon))

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Whether each action came from the epsilon branch: not a largest advantage ``A``.

        :param obs: stacked observations (``task``, ``depth``).
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :param actions: the actions taken, shape ``(B,)``.
        :return: booleans, shape ``(B,)``.
        """
        return table_non_greedy(self.a, obs, masks, actions)

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply eq. 7.1-7.2 to every decision of one finished route.

        :param episode: the route.
        """
        self.learn_batch([episode])

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order.

        A decision reads and writes only its own state's entries, so the ``k``-th visits of all
        the states are independent: they are applied together, ``k`` by ``k``.

        :param episodes: finished routes, oldest first.
        """
        if not episodes:
            return
        tasks, depths, actions, returns = decisions(episodes, self.gamma)
        check_indices((tasks, depths, actions), self.a.shape)
        for now in visit_groups(tasks * self.max_depth + depths):
            t, d, a, ret = tasks[now], depths[now], actions[now], returns[now]
            advantage = ret - self.v[t, d]  # R_i - V(s), with V before eq. 7.1's update
            self.v[t, d] += self.lr * advantage  # eq. 7.1
            self.a[t, d, a] += self.lr * (advantage - self.a[t, d, a])  # eq. 7.2
        self.episodes_seen += len(episodes)
