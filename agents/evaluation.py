"""Routing samples with a router, and measuring the routes.

:func:`run_episode` routes one sample and returns it as an :class:`~agents.base.Episode`;
:func:`evaluate_router` routes every sample of a test environment once in greedy mode and
reports accuracy, per-task accuracy, selection entropy, modules in use and the routing map
(task x depth -> most chosen action). When the environment squashes module updates by
exploration (``squash_kappa > 0``, ``000`` eq. 7.4), the actions about to be stepped are
reported to it as exploratory or not, as far as the router can tell
(:meth:`~agents.base.Agent.exploratory`), through the environment's ``mark_exploratory``.

Batched evaluation (DESIGN 7): where routing the samples together gives the routes of
routing them one by one (:func:`batch_obstacle` names what prevents it), the evaluation
routes all of them at once (:func:`routing_env.batch_routing.route_samples`): each depth is
one grouped pass of the network over the whole split. The actions come from the router's
greedy table where it has one (:meth:`~agents.base.Agent.greedy_table`: the tabular routers,
whose every route is known from the task), else from one greedy
:meth:`~agents.base.Agent.act_batch` per depth on every route still running. The results are
those of the one-by-one path (``batched=False``, the reference) up to float rounding in the
activations: the same routes, accuracies, routing map and rewards, the mean loss within
float precision.

Only routers (:class:`~agents.base.Agent`) come here: the entry points of
:mod:`agents.training` wrap Stable-Baselines3 models once (:func:`agents.training.as_router`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from agents.base import Agent, Episode, route_path
from routing_env.batch_routing import Decide, batch_routing_obstacle, route_samples
from routing_env.mdp import RoutingMDP
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


def evaluate_router(
    router: Agent, env: Any, episodes: int | None = None, batched: bool = True
) -> dict[str, Any]:
    """Greedy evaluation: route ``episodes`` samples (default: the whole split once).

    The samples are the same at every call: the whole split in order, or ``episodes`` evenly
    spaced samples of it (so every task is represented), chosen with
    ``reset(options={"sample_index": i})``.

    :func:`agents.evaluate` is this for routers and Stable-Baselines3 models alike (wrapped in
    :class:`agents.sb3.SB3Router`).

    Args:
        router: the router, put in greedy mode for the call.
        env: the test environment (a single-sample routing env, possibly wrapped).
        episodes: samples to route (default: all).
        batched: route the samples all at once where that gives the one-by-one results
            (:func:`batch_obstacle` is ``None``; see the module docstring), else one by one;
            ``False`` always routes them one by one through ``env``.

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
    network = base.network
    sizes = {
        "num_tasks": base.dataset.num_tasks,
        "max_depth": network.max_depth,
        "num_actions": network.num_actions,
        "recurrent": network.routing == "recurrent",
    }
    together = batched and len(indices) > 0 and batch_obstacle(router, env) is None
    was_greedy = router.greedy
    router.greedy = True
    try:
        if together:
            routed = route_samples(env, indices, greedy_decisions(router, base))
            final = routed.final_info
            return summarize_routes(
                final["correct"],
                final["loss"],
                final["path"],
                routed.returns,
                routed.tasks,
                **sizes,
            )
        routes = [run_episode(router, env, options={"sample_index": int(i)}) for i in indices]
    finally:
        router.greedy = was_greedy
    return route_statistics(
        [episode.final_info for episode in routes],
        [sum(episode.rewards) for episode in routes],
        [int(episode.observations[0]["task"]) for episode in routes],
        **sizes,
    )


def batch_obstacle(router: Agent, env: Any) -> str | None:
    """Why :func:`evaluate_router` would route ``env``'s samples one by one, or ``None`` when
    it routes them all at once.

    The environment must allow it (:func:`routing_env.batch_routing.batch_routing_obstacle`:
    a routing env that does not train its modules, bare or under pass-through wrappers) and
    the router must declare that its greedy actions can be batched
    (:meth:`~agents.base.Agent.greedy_batchable`).
    """
    reason = batch_routing_obstacle(env)
    if reason is not None:
        return reason
    if not router.greedy_batchable():
        return (
            f"{type(router).__name__} does not declare its greedy actions batchable "
            "(greedy_batchable)"
        )
    return None


def greedy_decisions(router: Agent, env: RoutingMDP) -> Decide:
    """The router's greedy actions as :func:`~routing_env.batch_routing.route_samples`'s
    ``decide``: look-ups in its greedy table when it has one for ``env``'s tasks and depths
    (and the observations are the default ``Dict``, which a tabular router reads), else one
    :meth:`~agents.base.Agent.act_batch` per depth. Call it with the router in greedy mode."""
    network = env.network
    masks = np.stack([network.action_mask(d) for d in range(network.max_depth)]).astype(bool)
    table = None
    if not env.flatten_observation:
        table = router.greedy_table(env.dataset.num_tasks, masks)
    if table is None:
        return lambda obs, masks, tasks, depth: router.act_batch(obs, masks)
    table = np.asarray(table, dtype=np.int64)
    expected = (env.dataset.num_tasks, network.max_depth)
    if table.shape != expected:
        raise ValueError(
            f"{type(router).__name__}.greedy_table gave shape {table.shape}, expected {expected}"
        )
    return lambda obs, masks, tasks, depth: table[tasks, depth]


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
    (``final_infos``, with each route's return and task): :func:`summarize_routes` of their
    columns."""
    paths = np.full((len(final_infos), max_depth), -1, dtype=np.int64)
    for row, info in enumerate(final_infos):
        path = route_path(info)[:max_depth]
        paths[row, : len(path)] = path
    return summarize_routes(
        np.array([bool(info["correct"]) for info in final_infos], dtype=bool),
        np.array([info["loss"] for info in final_infos], dtype=float),
        paths,
        np.asarray(returns, dtype=float),
        tasks,
        num_tasks=num_tasks,
        max_depth=max_depth,
        num_actions=num_actions,
        recurrent=recurrent,
    )


def summarize_routes(
    correct: np.ndarray,
    losses: np.ndarray,
    paths: np.ndarray,
    returns: np.ndarray,
    tasks: Sequence[int] | np.ndarray,
    num_tasks: int,
    max_depth: int,
    num_actions: int,
    recurrent: bool,
) -> dict[str, Any]:
    """The statistics of :func:`evaluate_router` from finished routes as columns.

    Args:
        correct: ``(N,)`` whether each route's prediction was right.
        losses: ``(N,)`` each route's loss, ``-1`` for a route ended by a masked action (no
            prediction: left out of the mean loss).
        paths: ``(N, max_depth)`` each route's actions, padded with ``-1``.
        returns: ``(N,)`` each route's return.
        tasks: ``(N,)`` each route's task.
        num_tasks, max_depth, num_actions: the sizes of the routing map and counts.
        recurrent: count modules without their depth (one bank).
    """
    tasks = np.asarray(tasks, dtype=np.int64)
    correct = np.asarray(correct, dtype=bool)
    losses = np.asarray(losses, dtype=float)
    losses = losses[losses >= 0]
    paths = np.asarray(paths, dtype=np.int64)[:, :max_depth]
    taken = paths >= 0
    depths = np.broadcast_to(np.arange(paths.shape[1]), paths.shape)
    states = np.broadcast_to(tasks[:, None], paths.shape)
    cells = (states[taken] * max_depth + depths[taken]) * num_actions + paths[taken]
    size = num_tasks * max_depth * num_actions
    counts = np.bincount(cells, minlength=size).reshape(num_tasks, max_depth, num_actions)
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
        "mean_reward": float(np.mean(returns)) if len(returns) else float("nan"),
        "mean_loss": float(losses.mean()) if len(losses) else float("nan"),
        "route_entropy": selection_entropy(per_depth),
        "modules_used": modules_used,
        "routing_map": routing_map.tolist(),
        "episodes": len(correct),
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
