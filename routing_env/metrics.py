"""Instruments of the non-stationarity benchmark (DESIGN 6).

In a routing environment the modules the agent chooses among train on the agent's own routes,
so the value of an action drifts under the agent. These instruments measure that drift and
what it does to routing:

* :class:`ModuleDriftRecorder`: the L2 norm of the parameter change of every module update,
  per routed layer and in total.
* :class:`ReturnDriftProbe`: the expected return of a frozen snapshot of the policy on a
  fixed evaluation set, measured again after the modules trained; with the modules frozen
  (``train_modules=False``) it does not move at all.
* :func:`map_stability`: the share of (task, depth) cells of the routing map whose most chosen
  module is unchanged between two measurements.
* :func:`task_partition_ari`: on suites with known task clusters (SyntheticMTL), the adjusted
  Rand index between the tasks grouped by their greedy route and the true clusters.
* Selection entropy and modules in use (collapse, ``000`` 4.3) come from
  :func:`agents.training.evaluate`.

:func:`measure_nonstationarity` is the protocol runner behind ``routing-env
bench-nonstationarity`` (``docs/benchmark.md``): it trains an agent and records all of them
every ``every`` routes.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from agents.base import Agent
from agents.training import as_router, evaluate, evaluation_indices, run_episode, train
from routing_env.env import RoutingEnv
from routing_env.network import RoutedNetwork


class ModuleDriftRecorder:
    """Record how far every module update moves the network's parameters.

    After each update of ``network`` (through :meth:`RoutedNetwork.register_update_hook`) the
    recorder appends, per parameter group, the L2 norm of the change of that group's
    parameters since the previous update: the per-update module drift of DESIGN 6. Groups are
    the routed layers (``"layer0"``, ``"layer1"``, ...; ``"bank"`` in recurrent routing) and,
    when they hold trainable parameters, ``"trunk"``, ``"projection"`` and ``"readout"``;
    ``"total"`` is the norm over all of them. With ``train_modules=False`` there are no
    updates, so nothing is recorded.

    Args:
        network: the routed network to watch (``env.unwrapped.network``).

    Attributes:
        history: group name -> list of per-update drifts, in update order.
    """

    def __init__(self, network: RoutedNetwork) -> None:
        if not isinstance(network, RoutedNetwork):
            raise TypeError(f"network must be a RoutedNetwork, got {type(network).__name__}")
        self.network = network
        self._groups = _parameter_groups(network)
        # Clones: the parameters are views of stacked tensors that updates change in place.
        self._previous = {
            name: [p.detach().clone() for p in params] for name, params in self._groups.items()
        }
        self.history: dict[str, list[float]] = {name: [] for name in (*self._groups, "total")}
        self._handle = network.register_update_hook(self._record)

    def _record(self, network: RoutedNetwork) -> None:
        total = 0.0
        with torch.no_grad():
            for name, params in self._groups.items():
                squares = 0.0
                for param, previous in zip(params, self._previous[name], strict=True):
                    squares += float((param.detach() - previous).double().pow(2).sum())
                    previous.copy_(param.detach())
                self.history[name].append(math.sqrt(squares))
                total += squares
        self.history["total"].append(math.sqrt(total))

    @property
    def updates(self) -> int:
        """Module updates recorded so far."""
        return len(self.history["total"])

    def mean(self, since: int = 0) -> dict[str, float]:
        """Mean drift per update of every group over the updates from number ``since`` on
        (0 when there were none: no update, no change)."""
        return {
            name: float(np.mean(values[since:])) if len(values) > since else 0.0
            for name, values in self.history.items()
        }

    def close(self) -> None:
        """Stop recording."""
        self._handle.remove()


def _parameter_groups(network: RoutedNetwork) -> dict[str, list[torch.nn.Parameter]]:
    """Trainable parameters by routed layer (or bank) and by the other top-level parts."""
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if parts[0] == "layers":
            group = "bank" if network.routing == "recurrent" else f"layer{parts[1]}"
        else:
            group = parts[0]
        groups.setdefault(group, []).append(param)
    return groups


class ReturnDriftProbe:
    """The expected return of frozen policy snapshots on a fixed evaluation set.

    :meth:`snapshot` deep-copies a policy; :meth:`value` routes the same evaluation samples
    (``episodes`` evenly spaced samples of ``eval_env``'s split, see
    :func:`agents.training.evaluation_indices`) with a fresh copy of that snapshot and returns
    the mean return. Every measurement starts from the same copy (same random state) and runs
    greedy by default, on an environment that does not train, with the modules in eval mode:
    it is exactly reproducible, so the value of a snapshot changes only when the modules did.
    The return drift of DESIGN 6 is ``value(snapshot)`` now minus its value when taken.

    A Stable-Baselines3 model (or :class:`agents.sb3.SB3Router`) is snapshotted through a copy
    of its policy network; non-greedy measurements of it draw from torch's global generator and
    are not reproducible, so keep ``greedy=True`` for SB3.

    Args:
        eval_env: a single-sample routing env with ``train_modules=False`` sharing the
            training env's network (e.g. ``RoutingEnv(split="test", network=...)``).
        episodes: evaluation samples (default: the whole split).
        greedy: measure the snapshot's greedy policy (default) or its stochastic policy with a
            fixed random state.
    """

    def __init__(self, eval_env: Any, episodes: int | None = None, greedy: bool = True) -> None:
        base = eval_env.unwrapped
        if not isinstance(base, RoutingEnv):
            raise TypeError(
                f"eval_env must be a single-sample RoutingEnv (or a wrapper of one), got "
                f"{type(base).__name__}"
            )
        if base.train_modules:
            raise ValueError(
                "eval_env trains its modules (train_modules=True): measuring would change the "
                "network; use RoutingEnv(split='test', network=...) or train_modules=False"
            )
        count = base.num_samples if episodes is None else min(int(episodes), base.num_samples)
        if count < 1:
            raise ValueError(f"episodes must be positive, got {episodes}")
        self.eval_env = eval_env
        self.indices = evaluation_indices(base.num_samples, count)
        self.greedy = bool(greedy)

    @staticmethod
    def snapshot(agent: Agent | Any) -> Agent:
        """A frozen copy of ``agent``'s policy (an :class:`~agents.base.Agent`, an
        :class:`agents.sb3.SB3Router` or a bare SB3 model)."""
        return copy.deepcopy(as_router(agent))

    def value(self, snapshot: Agent) -> float:
        """Mean return of ``snapshot`` (left untouched) on the evaluation samples."""
        network = self.eval_env.unwrapped.network
        if network.training:
            network.eval()
        policy = copy.deepcopy(snapshot)
        policy.greedy = self.greedy
        returns = [
            sum(run_episode(policy, self.eval_env, options={"sample_index": int(i)}).rewards)
            for i in self.indices
        ]
        return float(np.mean(returns))


def map_stability(previous: Any, current: Any) -> float:
    """Share of (task, depth) cells whose most chosen action is the same in two routing maps.

    Maps are ``num_tasks x max_depth`` arrays of the most chosen action, ``-1`` where a depth
    was never reached (:func:`agents.training.evaluate`'s ``routing_map``). Cells reached in
    neither map are left out; a cell reached in only one counts as changed. ``nan`` when no
    cell is reached in either.
    """
    before, after = np.asarray(previous), np.asarray(current)
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(
            "routing maps must be two task x depth arrays of one shape; got shapes "
            f"{before.shape} and {after.shape}"
        )
    reached = (before >= 0) | (after >= 0)
    if not reached.any():
        return float("nan")
    return float((before == after)[reached].mean())


def task_partition_ari(routing_map: Any, true_clusters: Any, depth: int | None = None) -> float:
    """Adjusted Rand index between the tasks grouped by route and the true task clusters.

    Tasks whose rows of ``routing_map`` (their greedy routes) are identical form one group
    (with ``depth``, tasks that take the same module at that depth). 1 when the groups are
    exactly the clusters, about 0 for a partition unrelated to them (``000`` 4.2: the
    optimal partition pools the tasks of a cluster).

    Args:
        routing_map: ``num_tasks x max_depth`` most chosen actions (``evaluate``'s
            ``routing_map``).
        true_clusters: cluster id of each task (``MultiTaskDataset.task_clusters``).
        depth: compare the grouping at one depth only (default: whole routes).
    """
    routes = np.asarray(routing_map)
    clusters = np.asarray(true_clusters)
    if routes.ndim != 2 or clusters.shape != (routes.shape[0],):
        raise ValueError(
            f"need a task x depth routing map and one cluster id per task; got a map of shape "
            f"{routes.shape} and clusters of shape {clusters.shape}"
        )
    if depth is not None:
        if not 0 <= depth < routes.shape[1]:
            raise ValueError(f"depth {depth} is outside the map's depths 0..{routes.shape[1] - 1}")
        routes = routes[:, depth : depth + 1]
    groups = np.unique(routes, axis=0, return_inverse=True)[1].reshape(-1)
    return float(adjusted_rand_score(clusters, groups))


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
        agent: an :class:`~agents.base.Agent`, or an SB3 model / :class:`agents.sb3.SB3Router`
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
    agent: Agent, env: Any, seed: int | None, max_depth: int
) -> Callable[[int], dict[str, Any]]:
    """``train_routes(n)``: ``model.learn`` for an SB3 router, :func:`agents.train` for ours."""
    sb3 = sys.modules.get("agents.sb3")  # an SB3Router exists only once agents.sb3 is imported
    if sb3 is not None and isinstance(agent, sb3.SB3Router):
        model = agent.model

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
