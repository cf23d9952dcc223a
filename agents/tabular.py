"""The base class of the tabular routers, and the helpers they share.

:class:`TabularAgent` holds what the tabular algorithms have in common: tables keyed by the
decision state ``(task, depth)``, acting (one state or a batch, greedy mode), which actions were
exploratory, and reading finished routes as arrays. Each algorithm's file keeps its equation,
its constructor (the hyperparameters and tables), its probabilities and its update.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from agents.base import Agent, Episode, EpisodeBatch, EpsilonSchedule


@dataclass(eq=False)
class TabularAgent(Agent):
    """Base class of the routers whose learned state is tables indexed by ``[task, depth]``.

    A subclass is a dataclass: its fields are its own hyperparameters, after the ones below, and
    the generated constructor records them all for :func:`agents.load`. It implements

    * :meth:`init_learned_state`: check the hyperparameters, create the tables (named in
      ``state_names``);
    * :meth:`behaviour`: the probabilities :meth:`act` samples from, in a batch of states;
    * :meth:`greedy_scores`: per-action scores whose largest allowed entry is the greedy action;
    * :meth:`learn_batch` (routes together) or :meth:`~agents.base.Agent.learn` (route by route;
      each default calls the other, so one of them must be overridden).

    :param num_tasks: number of task ids (the tables' first axis).
    :param max_depth: number of decisions per route (depths ``0 .. max_depth - 1``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate of the tables.
    :param seed: seed of the agent's own random stream.
    :param gamma: discount of the intermediate rewards in the return; the final reward is not
        discounted (``001`` Algorithm 3).
    """

    num_tasks: int
    max_depth: int
    num_actions: int
    lr: float = 0.1
    seed: int | None = None
    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__init__(self.seed)
        self._remember(**{field.name: getattr(self, field.name) for field in fields(self)})
        self.init_learned_state()

    def init_learned_state(self) -> None:
        """Check the hyperparameters and create the tables; called once by the constructor."""
        raise NotImplementedError

    # ------------------------------------------------------------------ acting

    def behaviour(self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, num_actions)`` :meth:`act` samples from; zero on masked actions.

        :param tasks: task ids, shape ``(B,)`` (checked against the tables).
        :param depths: depths, shape ``(B,)`` (checked against the tables).
        :param masks: boolean allowed actions, shape ``(B, num_actions)``, at least one per row.
        """
        raise NotImplementedError

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """Per-action scores ``(B, num_actions)`` whose largest allowed entry is the greedy
        action (lowest index on ties): a table's rows ``table[tasks, depths]``."""
        raise NotImplementedError

    def policy(self, task: int, depth: int, mask: np.ndarray | None = None) -> np.ndarray:
        """The distribution :meth:`act` samples from in state ``(task, depth)``.

        :param task: task id.
        :param depth: decision depth.
        :param mask: allowed actions (default: all).
        :return: probabilities, shape ``(num_actions,)``.
        """
        masks = as_masks(np.ones(self.num_actions) if mask is None else mask)
        tasks, depths = self._states({"task": np.array([task]), "depth": np.array([depth])})
        return self.behaviour(tasks, depths, masks)[0]

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """Sample an allowed action; the greedy one when :attr:`greedy`.

        :param obs: the observation; only ``obs["task"]`` and ``obs["depth"]`` are used.
        :param info: holds ``action_mask``.
        :return: the action.
        """
        task, depth, mask = obs["task"], obs["depth"], info["action_mask"]
        if not (
            type(task) is int
            and type(depth) is int
            and 0 <= task < self.num_tasks
            and 0 <= depth < self.max_depth
            and np.ndim(mask) == 1
        ):  # anything else takes the batch path, with its checks and errors
            batch = {"task": np.array([task]), "depth": np.array([depth])}
            return int(self.act_batch(batch, mask)[0])
        # act_batch on one row, with its arithmetic and its one draw.
        allowed = np.asarray(mask) > 0
        if not allowed.any():
            raise ValueError(_NOTHING_ALLOWED)
        masks = allowed[None]
        tasks, depths = np.array([task]), np.array([depth])
        if self.greedy:
            scores = self.greedy_scores(tasks, depths)[0]
            return int(np.argmax(np.where(allowed, scores, -np.inf)))
        cdf = np.add.accumulate(self.behaviour(tasks, depths, masks)[0])
        return int(np.count_nonzero(cdf <= self.rng.random() * cdf[-1]))

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """One action per row, as :meth:`act`, without a loop over the rows: one
        ``rng.random(B)`` draw, none in greedy mode.

        :param obs: stacked observations; only ``obs["task"]`` and ``obs["depth"]`` (shape
            ``(B,)``) are used.
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :return: actions, shape ``(B,)``.
        """
        masks = as_masks(masks)
        tasks, depths = self._states(obs)
        if self.greedy:
            scores = self.greedy_scores(tasks, depths)
            return np.argmax(np.where(masks, scores, -np.inf), axis=1)
        return sample(self.rng, self.behaviour(tasks, depths, masks))

    def greedy_batchable(self) -> bool:
        """``True``: greedy actions are table look-ups, one state at a time or in a batch."""
        return True

    def greedy_table(self, num_tasks: int, masks: np.ndarray) -> np.ndarray | None:
        """The action greedy :meth:`act_batch` takes at every ``(task, depth)``: the largest
        allowed :meth:`greedy_scores` entry, the lowest index on ties.

        :param num_tasks: the tasks to cover.
        :param masks: boolean allowed actions per depth, shape ``(max_depth, num_actions)``.
        :return: int64 actions, shape ``(num_tasks, max_depth)``; ``None`` when the tables do
            not cover those states (acting there raises).
        """
        masks = np.asarray(masks, dtype=bool)
        depth_count = len(masks)
        if num_tasks > self.num_tasks or depth_count > self.max_depth:
            return None
        tasks = np.repeat(np.arange(num_tasks), depth_count)
        depths = np.tile(np.arange(depth_count), num_tasks)
        allowed = as_masks(masks[depths])
        scores = np.where(allowed, self.greedy_scores(tasks, depths), -np.inf)
        return np.argmax(scores, axis=1).reshape(num_tasks, depth_count)

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray | None:
        """Whether each action was taken non-greedily (``000`` 7.4.2): below the largest
        allowed :meth:`greedy_scores` entry of its state (ties count as greedy).

        :param obs: stacked observations (``task``, ``depth``).
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :param actions: the actions taken, shape ``(B,)``.
        :return: booleans, shape ``(B,)``.
        """
        tasks, depths = self._states(obs)
        return non_greedy(self.greedy_scores(tasks, depths), masks, actions)

    def _states(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The observations' tasks and depths, checked against the tables."""
        tasks, depths = np.asarray(obs["task"]), np.asarray(obs["depth"])
        check_indices((tasks, depths), (self.num_tasks, self.max_depth))
        return tasks, depths

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Update from one finished route: :meth:`learn_batch` of that route alone.

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        self.learn_batch([episode])

    def visits(self, episodes: Sequence[Episode]) -> Iterator[tuple[np.ndarray, ...]]:
        """The decisions of ``episodes``, checked against the tables, in groups to apply at once.

        Group ``k`` holds, in order, every state's ``k``-th decision, so a group's states are
        distinct: for an update that reads and writes only the state of its own decision,
        applying the groups in turn is applying the decisions one by one.

        :param episodes: finished routes, oldest first.
        :return: per group, ``(tasks, depths, actions, returns, masks)``: arrays of shape
            ``(N,)`` (returns ``R_i`` with :attr:`gamma`) and boolean masks ``(N, num_actions)``.
        """
        grouped = self.grouped_decisions(episodes)
        if grouped is None:
            return
        *columns, bounds = grouped
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            yield tuple(column[start:stop] for column in columns)

    def grouped_decisions(self, episodes: Sequence[Episode]) -> tuple[np.ndarray, ...] | None:
        """:meth:`visits` as whole arrays: the decisions ordered group after group.

        :param episodes: finished routes, oldest first.
        :return: ``(tasks, depths, actions, returns, masks, bounds)``, group ``k`` being rows
            ``bounds[k]:bounds[k + 1]`` of the others; ``None`` without episodes.
        """
        ordered = self.ordered_decisions(episodes)
        if ordered is None:
            return None
        tasks, depths, actions, returns, masks = ordered
        order, bounds = visit_order(tasks * self.max_depth + depths)
        if order is not None:
            tasks, depths, actions = tasks[order], depths[order], actions[order]
            returns, masks = returns[order], masks[order]
        return tasks, depths, actions, returns, masks, bounds

    def ordered_decisions(self, episodes: Sequence[Episode]) -> tuple[np.ndarray, ...] | None:
        """The decisions of ``episodes`` in the order they were made, checked against the
        tables.

        :param episodes: finished routes, oldest first.
        :return: ``(tasks, depths, actions, returns, masks)`` as :meth:`visits` gives them per
            group; ``None`` without episodes.
        """
        if not episodes:
            return None
        tasks, depths, actions, returns = decisions(episodes, self.gamma)
        masks = decision_masks(episodes, self.num_actions)
        check_indices((tasks, depths, actions), (self.num_tasks, self.max_depth, self.num_actions))
        return tasks, depths, actions, returns, masks

    def route_decisions(self, episode: Episode) -> tuple[np.ndarray, ...]:
        """``(tasks, depths, actions, masks)`` of the decisions of one route, in order,
        checked against the tables (masks boolean, ``(N, num_actions)``)."""
        tasks, depths, actions, _ = decisions([episode], self.gamma)
        check_indices((tasks, depths, actions), (self.num_tasks, self.max_depth, self.num_actions))
        return tasks, depths, actions, decision_masks([episode], self.num_actions)


@dataclass(eq=False)
class EpsilonGreedyTabular(EpsilonSchedule, TabularAgent):
    """A tabular agent that acts epsilon-greedily on its :meth:`~TabularAgent.greedy_scores`.

    ``000`` eq. 3.3: among the ``n`` allowed actions the greedy one (ties broken at random; a
    table starts all tied) has probability ``1 - epsilon`` and each other one
    ``epsilon / (n - 1)``; epsilon follows the :class:`~agents.base.EpsilonSchedule` over the
    learned routes, counted in ``episodes_seen``. Greedy mode takes the allowed action with the
    largest score, the lowest index on ties.

    Arguments: those of :class:`TabularAgent`, then those of
    :class:`~agents.base.EpsilonSchedule`.
    """

    def behaviour(self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Eq. 3.3 on :meth:`~TabularAgent.greedy_scores` over the allowed actions."""
        return epsilon_greedy(self.greedy_scores(tasks, depths), masks, self.current_epsilon)


def as_masks(masks: np.ndarray) -> np.ndarray:
    """Boolean ``(B, num_actions)`` masks; raises if a row allows nothing."""
    masks = np.asarray(masks) > 0
    if masks.ndim < 2:
        masks = np.atleast_2d(masks)
    if not np.logical_and.reduce(np.logical_or.reduce(masks, axis=1), axis=None):
        raise ValueError(_NOTHING_ALLOWED)
    return masks


_NOTHING_ALLOWED = "no action is allowed by the mask of some state"


def check_indices(indices: tuple[np.ndarray, ...], shape: tuple[int, ...]) -> None:
    """Raise on (task, depth[, action]) outside the table: negative ones would silently wrap."""
    try:
        np.ravel_multi_index(indices, shape)
    except ValueError:
        got = ", ".join(
            f"{name}s {np.unique(index).tolist()}"
            for name, index in zip(
                ("task", "depth", "action")[: len(indices)], indices, strict=True
            )
        )
        raise ValueError(
            f"(task, depth, action) must index a table of shape {shape}; got {got}"
        ) from None


def restrict(pi: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Rows of ``pi`` restricted to the allowed actions and renormalised (uniform if all 0)."""
    pi = pi * masks
    total = np.add.reduce(pi, axis=1, keepdims=True)
    if np.fmin.reduce(total, axis=None) > 0:  # no row is empty (fmin skips NaN rows)
        pi /= total
        return pi
    empty = total <= 0
    return np.where(empty, masks, pi) / np.where(empty, masks.sum(axis=1, keepdims=True), total)


def sample(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One action per row by inverse CDF, from a single ``rng.random(B)`` draw."""
    count, width = probabilities.shape
    if count < _MANY:
        cdf = np.add.accumulate(probabilities, axis=1)
        # rng.random() < 1 makes u < cdf[:, -1], so some CDF entry exceeds u, and the first one
        # never belongs to a zero-probability action.
        u = rng.random(count) * cdf[:, -1]
        return np.count_nonzero(cdf <= u[:, None], axis=1)
    # Many rows: the same sums, one action (a contiguous row of the transpose) at a time, in
    # the order of np.cumsum, which is slow along short rows.
    cdf = probabilities.T.copy()
    for action in range(1, width):
        np.add(cdf[action - 1], cdf[action], out=cdf[action])
    u = rng.random(count) * cdf[-1]
    return np.add.reduce(cdf <= u, axis=0)


#: Rows from which :func:`sample` sums its CDF action by action.
_MANY = 64


def epsilon_greedy(values: np.ndarray, masks: np.ndarray, epsilon: float) -> np.ndarray:
    """``000`` eq. 3.3 per row, averaged over the random choice among tied greedy actions."""
    allowed = masks.sum(axis=1, keepdims=True)
    values = np.where(masks, values, -np.inf)
    best = values == values.max(axis=1, keepdims=True)
    greedy_share = best / best.sum(axis=1, keepdims=True)  # P(the tie-break picks a)
    epsilon = np.where(allowed > 1, epsilon, 0.0)  # a lone allowed action is not explored
    explore = epsilon / np.maximum(allowed - 1, 1)
    return masks * (greedy_share * (1.0 - epsilon) + (1.0 - greedy_share) * explore)


def non_greedy(scores: np.ndarray, masks: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Whether each row's action scores below the largest allowed score of its row (an
    exploratory action, ``000`` 7.4.2; ties with the greedy action count as greedy)."""
    scores = np.where(as_masks(masks), scores, -np.inf)
    chosen = scores[np.arange(len(scores)), np.asarray(actions, dtype=np.int64)]
    return chosen < scores.max(axis=1)


def decisions(
    episodes: Sequence[Episode], gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Task, depth, action and return ``R_i`` of every decision of ``episodes``, in order.

    An :class:`~agents.base.EpisodeBatch` is read from its arrays, without a loop over routes.
    """
    if isinstance(episodes, EpisodeBatch):
        return (
            _decision_entries(episodes, np.asarray(episodes.task, dtype=np.int64)),
            _decision_entries(episodes, np.asarray(episodes.depth, dtype=np.int64)),
            _decision_entries(episodes, np.asarray(episodes.actions, dtype=np.int64)),
            _decision_entries(episodes, episodes.returns(gamma)),
        )
    tasks, depths, actions, returns = [], [], [], []
    for episode in episodes:
        tasks += [obs["task"] for obs in episode.observations]
        depths += [obs["depth"] for obs in episode.observations]
        actions += episode.actions
        returns.append(episode.returns(gamma))
    return (
        np.array(tasks, dtype=np.int64),
        np.array(depths, dtype=np.int64),
        np.array(actions, dtype=np.int64),
        np.concatenate(returns),
    )


def _decision_entries(batch: EpisodeBatch, values: np.ndarray) -> np.ndarray:
    """``values[batch.valid]``: the ``(B, L, ...)`` entries of the decisions, route by route;
    when every route is ``L`` long, the same entries in the same order by a reshape."""
    if len(batch) and batch.lengths.min() == values.shape[1]:
        return values.reshape(-1, *values.shape[2:])
    return values[batch.valid]


def bootstrapped_targets(
    q: np.ndarray,
    tasks: np.ndarray,
    depths: np.ndarray,
    masks: np.ndarray,
    rewards: Sequence[float],
    gamma: float,
) -> np.ndarray:
    """``000`` eq. 3.2's target of every decision of one route, in order:
    ``r_i + gamma max_{a' allowed in s_{i+1}} Q(s_{i+1}, a')``, and ``r_i`` at the last one.

    All are read before the route's updates: each decision of a route is in a state of its own
    (its depth), so updating one never moves a value that another's target reads.
    """
    targets = np.array(rewards, dtype=np.float64)
    following = np.where(masks[1:], q[tasks[1:], depths[1:]], -np.inf).max(axis=1)
    targets[:-1] += gamma * following
    return targets


def decision_rewards(episodes: Sequence[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """The reward paid after every decision of ``episodes``, in order (float64), and the
    number of decisions of each route."""
    if isinstance(episodes, EpisodeBatch):
        rewards = np.asarray(episodes.rewards, dtype=np.float64)
        return _decision_entries(episodes, rewards), np.asarray(episodes.lengths, dtype=np.int64)
    rewards = [np.asarray(episode.rewards, dtype=np.float64) for episode in episodes]
    lengths = np.array([len(route) for route in rewards], dtype=np.int64)
    return (np.concatenate(rewards) if rewards else np.zeros(0)), lengths


def decision_masks(episodes: Sequence[Episode], num_actions: int) -> np.ndarray:
    """The ``action_mask`` of every decision of ``episodes``, in order (all actions when a
    decision's info has none)."""
    if isinstance(episodes, EpisodeBatch):
        return as_masks(_decision_entries(episodes, episodes.action_mask))
    everything = np.ones(num_actions)
    masks = []
    for episode in episodes:
        infos = [*episode.infos, *[{}] * (len(episode) - len(episode.infos))]
        masks += [info.get("action_mask", everything) for info in infos]
    return as_masks(np.array(masks))


def visit_index(states: np.ndarray) -> np.ndarray:
    """For each decision, how many earlier decisions were made in the same state."""
    states = np.asarray(states)
    order = np.argsort(states, kind="stable")  # each state's decisions together, in order
    ordered = states[order]
    first = np.ones(len(states), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    # Position in the sorted run minus the position where the run of that state starts.
    rank = np.arange(len(states)) - np.repeat(starts, np.diff(np.append(starts, len(states))))
    index = np.empty(len(states), dtype=np.int64)
    index[order] = rank
    return index


def visit_order(states: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The decisions grouped by :func:`visit_index`, as one permutation: group ``k`` holds, in
    order, the indices of the decisions that are the ``k``-th in their state (so its states are
    distinct). ``order`` lists the decisions group after group (``None`` when that is their own
    order) and group ``k`` is ``order[bounds[k]:bounds[k + 1]]``."""
    states = np.asarray(states)
    count = len(states)
    if count <= _FEW and len(set(states.tolist())) == count:
        # Distinct states (one route: each decision at its own depth) make one group.
        return None, np.array([0, count] if count else [0], dtype=np.int64)
    visit = visit_index(states)
    order = np.argsort(visit, kind="stable")
    sizes = np.bincount(visit)
    bounds = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    return order, bounds


#: Decisions few enough that checking them for distinct states costs less than grouping them.
_FEW = 16

