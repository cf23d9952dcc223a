"""helpers shared by the tabular agents"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from agents.base import Episode, EpisodeBatch


def as_masks(masks: np.ndarray) -> np.ndarray:
    """Boolean ``(B, num_actions)`` masks; raises if a row allows nothing."""
    masks = np.atleast_2d(np.asarray(masks) > 0)
    if not masks.any(axis=1).all():
        raise ValueError("no action is allowed by the mask of some state")
    return masks


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
    total = pi.sum(axis=1, keepdims=True)
    empty = total <= 0
    return np.where(empty, masks, pi) / np.where(empty, masks.sum(axis=1, keepdims=True), total)


def sample(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One action per row by inverse CDF, from a single ``rng.random(B)`` draw."""
    cdf = np.cumsum(probabilities, axis=1)
    # rng.random() < 1 makes u < cdf[:, -1], so some CDF entry exceeds u, and the first one
    # never belongs to a zero-probability action.
    u = rng.random(len(probabilities)) * cdf[:, -1]
    return (cdf <= u[:, None]).sum(axis=1)


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


def table_non_greedy(
    table: np.ndarray, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
) -> np.ndarray:
    """:func:`non_greedy` for a table keyed by (task, depth): whether each action scores below
    the largest allowed entry of ``table[task, depth]`` (a table of probabilities, preferences
    or values; any order-preserving transform of a row, such as a softmax or a renormalisation
    over the allowed actions, gives the same answer)."""
    tasks, depths = np.asarray(obs["task"]), np.asarray(obs["depth"])
    check_indices((tasks, depths), table.shape[:2])
    return non_greedy(table[tasks, depths], masks, actions)


def decisions(
    episodes: Sequence[Episode], gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Task, depth, action and return ``R_i`` of every decision of ``episodes``, in order.

    An :class:`~agents.base.EpisodeBatch` is read from its arrays, without a loop over routes.
    """
    if isinstance(episodes, EpisodeBatch):
        valid = episodes.valid
        return (
            np.asarray(episodes.task, dtype=np.int64)[valid],
            np.asarray(episodes.depth, dtype=np.int64)[valid],
            np.asarray(episodes.actions, dtype=np.int64)[valid],
            episodes.returns(gamma)[valid],
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


def decision_masks(episodes: Sequence[Episode], num_actions: int) -> np.ndarray:
    """The ``action_mask`` of every decision of ``episodes``, in order (all actions when a
    decision's info has none)."""
    if isinstance(episodes, EpisodeBatch):
        return as_masks(episodes.action_mask[episodes.valid])
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


def visit_groups(states: np.ndarray) -> list[np.ndarray]:
    """The decisions grouped by :func:`visit_index`: group ``k`` holds, in order, the indices
    of the decisions that are the ``k``-th in their state (so its states are distinct)."""
    visit = visit_index(states)
    if not len(visit):
        return []
    order = np.argsort(visit, kind="stable")
    bounds = np.cumsum(np.bincount(visit))
    return np.split(order, bounds[:-1])
