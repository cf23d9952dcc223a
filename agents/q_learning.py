"""Tabular Q-learning with epsilon-greedy exploration: ``000`` eq. 3.2-3.3 (Watkins, 1989)."""

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
    epsilon_greedy,
    sample,
    table_non_greedy,
)


@register
class QLearning(Agent):
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

    Acting, ``000`` eq. 3.3: among the ``n`` allowed actions the greedy one (ties broken at
    random, as the seed says; tables start all tied) has probability ``1 - epsilon`` and each
    other one ``epsilon / (n - 1)``. Epsilon can anneal linearly from ``epsilon`` to
    ``epsilon_final`` over ``epsilon_decay_episodes`` learned routes. Greedy mode takes the
    allowed action with the largest value, the lowest index on ties.

    :param num_tasks: number of task ids.
    :param max_depth: number of decisions per route (depths ``0 .. max_depth - 1``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate ``alpha``.
    :param seed: seed of the agent's own random stream.
    :param gamma: discount factor.
    :param epsilon: exploration rate (the start of the schedule when annealing).
    :param epsilon_final: exploration rate reached after ``epsilon_decay_episodes`` learned
        routes (linear); ``None`` keeps ``epsilon`` constant.
    :param epsilon_decay_episodes: length of the schedule, in learned routes.
    """

    state_names = ("q", "episodes_seen")

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
        self.q = np.zeros((num_tasks, max_depth, num_actions))
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
        check_indices((tasks, depths), self.q.shape[:2])
        return epsilon_greedy(self.q[tasks, depths], masks, self.epsilon)[0]

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """An epsilon-greedy allowed action; the largest value when greedy.

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
        check_indices((tasks, depths), self.q.shape[:2])
        values = self.q[tasks, depths]
        if self.greedy:
            return np.argmax(np.where(masks, values, -np.inf), axis=1)
        return sample(self.rng, epsilon_greedy(values, masks, self.epsilon))

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Whether each action came from eq. 3.3's random branch: not a largest ``Q``.

        :param obs: stacked observations (``task``, ``depth``).
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :param actions: the actions taken, shape ``(B,)``.
        :return: booleans, shape ``(B,)``.
        """
        return table_non_greedy(self.q, obs, masks, actions)

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply eq. 3.2 to every decision of one finished route, in order.

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        tasks = np.array([obs["task"] for obs in episode.observations], dtype=np.int64)
        depths = np.array([obs["depth"] for obs in episode.observations], dtype=np.int64)
        actions = np.array(episode.actions, dtype=np.int64)
        check_indices((tasks, depths, actions), self.q.shape)
        masks = decision_masks([episode], self.num_actions)
        last = len(episode) - 1
        for i, (t, d, a, r) in enumerate(zip(tasks, depths, actions, episode.rewards, strict=True)):
            target = r  # terminal: nothing to bootstrap from
            if i < last:
                target += self.gamma * self.q[tasks[i + 1], depths[i + 1]][masks[i + 1]].max()
            self.q[t, d, a] += self.lr * (target - self.q[t, d, a])  # eq. 3.2
        self.episodes_seen += 1

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same as :meth:`learn` on each route in order (each route bootstraps from the table
        the earlier ones left, so routes are not merged).

        :param episodes: finished routes, oldest first.
        """
        for episode in episodes:
            self.learn(episode)
