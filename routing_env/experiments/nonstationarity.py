"""The non-stationarity protocol behind ``routing-env bench-nonstationarity``
(``docs/benchmark.md``, DESIGN 6): train an agent and record every instrument of
:mod:`routing_env.metrics` every ``every`` routes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.base import Agent
from agents.training import as_router, evaluate, train
from routing_env.env import RoutingEnv
from routing_env.metrics import (
    ModuleDriftRecorder,
    ReturnDriftProbe,
    map_stability,
    task_partition_ari,
)


def measure_nonstationarity(
    agent: Agent | Any,
    env: Any,
    routes: int,
    every: int,
    eval_env: Any | None = None,
    eval_episodes: int | None = None,
    seed: int | None = 0,
    train_routes: Callable[[int], Any] | None = None,
    greedy_snapshots: bool = True,
) -> dict[str, Any]:
    """Train ``agent`` on ``env`` for ``routes`` routes and measure the drift every ``every``.

    At the start and after every ``every`` training routes, with a drift recorder on the
    network the whole time, one measurement records:

    * ``routes``: training routes so far;
    * ``module_drift``: mean L2 parameter change per module update since the last measurement
      (``module_drift_per_layer``: the same per routed layer); 0 when the modules did not
      update;
    * ``return_drift``: value now minus value then of the snapshot of the policy taken at the
      last measurement (:class:`ReturnDriftProbe`): how much the modules' training changed the
      expected return of a fixed policy in one interval (0 at the start);
    * ``snapshot_return``: the value of the current policy's snapshot;
    * ``accuracy``, ``route_entropy`` (selection entropy, nats), ``modules_used`` and
      ``routing_map`` of the current agent's greedy evaluation (:func:`agents.evaluate`);
    * ``map_stability``: :func:`map_stability` against the previous measurement (``nan`` at
      the start);
    * ``ari``: :func:`task_partition_ari` of the routing map against the true clusters, when
      the dataset has them (else ``nan``); ``ari_per_depth``: the same at each depth alone
      (tasks grouped by the module they take there), which credits partial sharing that
      whole routes hide;
    * ``train_accuracy``: accuracy of the interval's training routes (``nan`` at the start and
      when ``train_routes`` does not report it).

    Args:
        agent: an :class:`~agents.base.Agent`, or an SB3 model (wrapped here, once, in
            :class:`agents.sb3.SB3Router`) or an SB3Router
            (then give ``train_routes`` or let the default call ``model.learn`` for
            ``n * max_depth`` decisions, exact in layered routing; SB3 finishes its rollouts,
            so intervals can be longer).
        env: the training env (single-sample or :class:`~routing_env.vector.RoutingVectorEnv`);
            for an SB3 model, the routing env it learns on (its network is the one measured).
        routes: training routes in all.
        every: training routes between measurements.
        eval_env: the evaluation env (default: the test split of ``env``'s dataset on its
            network, same reward settings, no module training).
        eval_episodes: evaluation samples (default: the whole split).
        seed: seed of the first reset of the training env.
        train_routes: ``train_routes(n)`` trains the agent for ``n`` more routes (default:
            :func:`agents.train`, which continues the env's sample stream after the first
            call); a returned dict with ``train_accuracy`` is recorded.
        greedy_snapshots: measure snapshots greedily (see :class:`ReturnDriftProbe`).

    Returns:
        The history (a list per key above) plus ``summary`` (:func:`summarise`), ``seconds``
        and ``module_updates``.
    """
    if routes < 1 or every < 1:
        raise ValueError(f"routes and every must be positive, got routes={routes}, every={every}")
    agent = as_router(agent)
    base = env.unwrapped
    network = base.network
    if eval_env is None:
        eval_env = RoutingEnv(
            base.dataset,
            split="test",
            network=network,
            reward=base.reward_kind,
            collaboration_reward=base.collaboration_reward,
        )
    if train_routes is None:
        train_routes = _default_trainer(agent, env, seed, network.max_depth)
    probe = ReturnDriftProbe(eval_env, eval_episodes, greedy=greedy_snapshots)
    clusters = base.dataset.task_clusters
    recorder = ModuleDriftRecorder(network)
    history: dict[str, list[Any]] = {
        key: []
        for key in (
            "routes",
            "module_drift",
            "module_drift_per_layer",
            "return_drift",
            "snapshot_return",
            "accuracy",
            "route_entropy",
            "modules_used",
            "routing_map",
            "map_stability",
            "ari",
            "ari_per_depth",
            "train_accuracy",
        )
    }
    start = time.perf_counter()

    def measure(done: int, train_accuracy: float, since: int, snapshot: Agent | None) -> Agent:
        drift = recorder.mean(since)
        history["routes"].append(done)
        history["module_drift"].append(drift.pop("total"))
        history["module_drift_per_layer"].append(drift)
        if snapshot is not None:
            history["return_drift"].append(probe.value(snapshot) - history["snapshot_return"][-1])
        else:
            history["return_drift"].append(0.0)
        current = probe.snapshot(agent)
        result = evaluate(agent, eval_env, eval_episodes)
        # A greedy probe routes the evaluation's samples with the same greedy policy: the
        # evaluation's mean return is the new snapshot's value, no need to route them again.
        history["snapshot_return"].append(
            result["mean_reward"] if probe.greedy else probe.value(current)
        )
        history["accuracy"].append(result["accuracy"])
        history["route_entropy"].append(result["route_entropy"])
        history["modules_used"].append(result["modules_used"])
        routing_map = result["routing_map"]
        previous = history["routing_map"][-1] if history["routing_map"] else None
        history["routing_map"].append(routing_map)
        history["map_stability"].append(
            math.nan if previous is None else map_stability(previous, routing_map)
        )
        history["ari"].append(
            math.nan if clusters is None else task_partition_ari(routing_map, clusters)
        )
        depths = range(len(routing_map[0]))
        history["ari_per_depth"].append(
            [math.nan] * len(depths)
            if clusters is None
            else [task_partition_ari(routing_map, clusters, depth=d) for d in depths]
        )
        history["train_accuracy"].append(train_accuracy)
        return current

    if seed is not None:
        # A fresh network draws its modules from the seed of its first reset: reset now, so
        # that the measurement before training sees the modules training starts from (the
        # first training reset repeats the same draw and data order).
        env.reset(seed=seed)
    try:
        snapshot = measure(0, float("nan"), 0, None)
        done = 0
        while done < routes:
            chunk = min(every, routes - done)
            since = recorder.updates
            report = train_routes(chunk)
            done += chunk
            train_accuracy = float("nan")
            if isinstance(report, dict) and "train_accuracy" in report:
                train_accuracy = float(report["train_accuracy"])
            snapshot = measure(done, train_accuracy, since, snapshot)
    finally:
        recorder.close()
    history["module_updates"] = recorder.updates
    history["module_drift_all"] = recorder.mean()["total"]
    history["seconds"] = time.perf_counter() - start
    history["summary"] = summarise(history)
    return history


def _default_trainer(
    agent: Agent | Any, env: Any, seed: int | None, max_depth: int
) -> Callable[[int], dict[str, Any]]:
    """``train_routes(n)``: :func:`agents.train` for our agents, ``model.learn`` for SB3."""
    model = getattr(agent, "model", None)  # an SB3Router's model
    if model is not None and hasattr(model, "learn"):

        def learn(count: int) -> dict[str, Any]:
            model.learn(total_timesteps=count * max_depth, reset_num_timesteps=False)
            return {}

        return learn
    calls = 0

    def learn_ours(count: int) -> dict[str, Any]:
        nonlocal calls
        history = train(agent, env, count, seed=seed if calls == 0 else None, progress=False)
        calls += 1
        return {"train_accuracy": history["final"]["train_accuracy"]}

    return learn_ours


def summarise(history: dict[str, Any]) -> dict[str, float]:
    """The figures of the benchmark table from a :func:`measure_nonstationarity` history.

    ``final_accuracy``, ``final_entropy``, ``final_modules_used`` and ``final_ari`` are the
    last measurement's; ``module_drift`` is the mean drift over all module updates;
    ``return_drift`` the mean absolute return drift per interval (measurements after the
    first); ``map_stability`` the mean over those intervals; ``final_ari_per_depth`` the mean
    over depths of the last per-depth ARI.
    """
    intervals = slice(1, None)
    drifts = np.abs(np.asarray(history["return_drift"][intervals], dtype=float))
    stability = np.asarray(history["map_stability"][intervals], dtype=float)
    return {
        "final_accuracy": history["accuracy"][-1],
        "module_drift": history["module_drift_all"],
        "return_drift": float(drifts.mean()) if drifts.size else 0.0,
        "final_entropy": history["route_entropy"][-1],
        "final_modules_used": history["modules_used"][-1],
        "map_stability": float(np.nanmean(stability)) if np.isfinite(stability).any() else math.nan,
        "final_ari": history["ari"][-1],
        "final_ari_per_depth": float(np.mean(history["ari_per_depth"][-1])),
    }
