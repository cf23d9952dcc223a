"""Routing samples with a router, and measuring the routes.

:func:`run_episode` routes one sample and returns it as an :class:`~agents.base.Episode`;
:func:`evaluate_router` routes every sample of a test environment once in greedy mode and
reports accuracy, per-task accuracy, selection entropy, modules in use and the routing map
(task x depth -> most chosen action). When the environment squashes module updates by
exploration (``squash_kappa > 0``, ``000`` eq. 7.4), the actions about to be stepped are
reported to it as exploratory or not, as far as the router can tell
(:meth:`~agents.base.Agent.exploratory`), through the environment's ``mark_exploratory``.

Only routers (:class:`~agents.base.Agent`) come here: the entry points of
:mod:`agents.training` wrap Stable-Baselines3 models once (:func:`agents.training.as_router`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from agents.base import Agent, Episode, route_path
from routing_env.metrics import evaluation_indices


def run_episode(
    agent: Agent, env: Any, seed: int | None = None, options: dict[str, Any] | None = None
) -> Episode:
    """Route one sample of ``env`` with ``agent`` and return the episode (no learning)."""
    obs, info = env.reset(seed=seed, options=options)
    observations, actions, rewards, infos = [], [], [], []
    terminated = truncated = False
    squashing = squashes(env)
    while not (terminated or truncated):
        action = agent.act(obs, info)
        if squashing:
            batch = {key: np.asarray(value)[None] for key, value in obs.items()}
            mask = np.asarray(info["action_mask"])[None]
            report_exploration(agent, env, batch, mask, np.array([action]))
        observations.append(obs)
        infos.append(info)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
    return Episode(observations, actions, rewards, infos, final_info=info)


def squashes(env: Any) -> bool:
    """Whether ``env`` squashes module updates by exploration (``000`` eq. 7.4), so that the
    agent's exploratory actions are worth reporting."""
    return getattr(env.unwrapped, "squash_kappa", 0.0) > 0


def report_exploration(
    agent: Agent, env: Any, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
) -> None:
    """Mark the actions about to be stepped as exploratory or not, if the agent can tell."""
    explored = agent.exploratory(obs, masks, actions)
    if explored is None:
        return
    base = env.unwrapped
    base.mark_exploratory(explored if isinstance(base, VectorEnv) else bool(explored[0]))


def evaluate_router(router: Agent, env: Any, episodes: int | None = None) -> dict[str, Any]:
    """Greedy evaluation: route ``episodes`` samples (default: the whole split once).

    The samples are the same at every call: the whole split in order, or ``episodes`` evenly
    spaced samples of it (so every task is represented), chosen with
    ``reset(options={"sample_index": i})``.

    :func:`agents.evaluate` is this for routers and Stable-Baselines3 models alike (wrapped in
    :class:`agents.sb3.SB3Router`).

    Returns ``accuracy``, ``per_task_accuracy`` (list, ``nan`` for tasks not seen),
    ``mean_reward``, ``mean_loss``, ``route_entropy`` (mean over depths of the entropy, in
    nats, of the actions chosen at that depth), ``modules_used`` (distinct (depth, module)
    pairs in layered routing, distinct modules in recurrent routing), ``routing_map``
    (``num_tasks x max_depth`` list of the most chosen action, ``-1`` where never reached) and
    ``episodes``.
    """
    base = env.unwrapped
    count = base.num_samples if episodes is None else min(int(episodes), base.num_samples)
    indices = evaluation_indices(base.num_samples, count)
    was_greedy = router.greedy
    router.greedy = True
    try:
        routes = [run_episode(router, env, options={"sample_index": int(i)}) for i in indices]
    finally:
        router.greedy = was_greedy
    network = base.network
    return route_statistics(
        [episode.final_info for episode in routes],
        [sum(episode.rewards) for episode in routes],
        [int(episode.observations[0]["task"]) for episode in routes],
        num_tasks=base.dataset.num_tasks,
        max_depth=network.max_depth,
        num_actions=network.num_actions,
        recurrent=network.routing == "recurrent",
    )


def route_statistics(
    final_infos: list[Mapping[str, Any]],
    returns: list[float],
    tasks: Sequence[int],
    num_tasks: int,
    max_depth: int,
    num_actions: int,
    recurrent: bool,
) -> dict[str, Any]:
    """Accuracy, selection entropy, modules in use and routing map of finished routes
    (``final_infos``, with each route's return and task)."""
    tasks = np.asarray(tasks, dtype=np.int64)
    correct = np.array([bool(info["correct"]) for info in final_infos])
    # Routes ended by a masked action made no prediction and have no loss (-1).
    losses = np.array([info["loss"] for info in final_infos], dtype=float)
    losses = losses[losses >= 0]
    counts = np.zeros((num_tasks, max_depth, num_actions), dtype=np.int64)
    for info, task in zip(final_infos, tasks.tolist(), strict=True):
        for depth, action in enumerate(route_path(info)[:max_depth]):
            counts[task, depth, action] += 1
    per_task = [
        float(correct[tasks == t].mean()) if np.any(tasks == t) else float("nan")
        for t in range(num_tasks)
    ]
    per_depth = counts.sum(axis=0)
    module_counts = per_depth[:, : num_actions - 1]
    if recurrent:
        modules_used = int(np.count_nonzero(module_counts.sum(axis=0)))
    else:
        modules_used = int(np.count_nonzero(module_counts))
    routing_map = np.where(counts.sum(axis=2) > 0, counts.argmax(axis=2), -1)
    return {
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "per_task_accuracy": per_task,
        "mean_reward": float(np.mean(returns)) if returns else float("nan"),
        "mean_loss": float(losses.mean()) if len(losses) else float("nan"),
        "route_entropy": selection_entropy(per_depth),
        "modules_used": modules_used,
        "routing_map": routing_map.tolist(),
        "episodes": len(final_infos),
    }


def selection_entropy(counts: np.ndarray) -> float:
    """Mean over depths (rows of ``counts``, action counts or probabilities) of the entropy,
    in nats, of the actions chosen there; depths never reached are left out (0 if none)."""
    entropies = [entropy(row) for row in counts if row.sum() > 0]
    return float(np.mean(entropies)) if entropies else 0.0


def entropy(counts: np.ndarray) -> float:
    """Entropy, in nats, of the distribution proportional to ``counts``."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
