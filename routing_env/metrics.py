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

They need no router package: a policy is anything with ``act(obs, info)`` and ``greedy``. The
protocol runner behind ``routing-env bench-nonstationarity`` (``docs/benchmark.md``), which
trains an agent and records all of them every ``every`` routes, is
:func:`routing_env.experiments.nonstationarity.measure_nonstationarity`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from routing_env.batch_routing import batch_routing_obstacle, route_samples
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

    :meth:`snapshot` copies a policy (anything with ``act(obs, info)`` and ``greedy``, such as an
    :class:`agents.base.Agent`); :meth:`value` routes the same evaluation samples (``episodes``
    evenly spaced samples of ``eval_env``'s split, :func:`evaluation_indices`) with a fresh copy of
    that snapshot and returns the mean return. Every measurement starts from the same copy (same
    random state) and runs greedy by default, on an environment that does not train, with the
    modules in eval mode: it is exactly reproducible, so the value of a snapshot changes only when
    the modules did.
    The return drift of DESIGN 6 is ``value(snapshot)`` now minus its value when taken.

    A greedy measurement routes the evaluation samples all at once
    (:func:`~routing_env.batch_routing.route_samples`, one ``act_batch`` per depth) when the
    policy declares its greedy actions batchable (``greedy_batchable()``, as
    :class:`agents.base.Agent` has it) and ``eval_env`` allows it
    (:func:`~routing_env.batch_routing.batch_routing_obstacle`): the same routes and returns as
    routing them one by one.

    A policy that cannot be deep-copied provides ``frozen_copy()`` (:class:`agents.sb3.SB3Router`
    copies its SB3 policy network); non-greedy measurements of an SB3 policy draw from torch's
    global generator and are not reproducible, so keep ``greedy=True`` for SB3.

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
    def snapshot(policy: Any) -> Any:
        """A frozen copy of ``policy``: its own ``frozen_copy()`` when it has one, else a deep
        copy."""
        copier = getattr(policy, "frozen_copy", None)
        return copier() if callable(copier) else copy.deepcopy(policy)

    def value(self, snapshot: Any) -> float:
        """Mean return of ``snapshot`` (left untouched) on the evaluation samples."""
        network = self.eval_env.unwrapped.network
        if network.training:
            network.eval()
        policy = copy.deepcopy(snapshot)
        policy.greedy = self.greedy
        if self._batchable(policy):
            routed = route_samples(
                self.eval_env,
                self.indices,
                lambda obs, masks, tasks, depth: policy.act_batch(obs, masks),
            )
            return float(np.mean(routed.returns))
        returns = [self._route(policy, int(index)) for index in self.indices]
        return float(np.mean(returns))

    def _batchable(self, policy: Any) -> bool:
        """Whether :meth:`value` may route the samples of ``policy`` all at once."""
        declared = getattr(policy, "greedy_batchable", None)
        return (
            self.greedy
            and callable(declared)
            and bool(declared())
            and batch_routing_obstacle(self.eval_env) is None
        )

    def _route(self, policy: Any, index: int) -> float:
        """The return of routing split sample ``index`` with ``policy``."""
        obs, info = self.eval_env.reset(options={"sample_index": index})
        total, terminated = 0.0, False
        while not terminated:
            obs, reward, terminated, truncated, info = self.eval_env.step(policy.act(obs, info))
            total += float(reward)
            terminated = terminated or truncated
        return total


def evaluation_indices(num_samples: int, count: int) -> np.ndarray:
    """``count`` evenly spaced indices of ``num_samples`` samples: the samples an evaluation
    routes, the same at every call, every task represented."""
    return np.linspace(0, num_samples - 1, num=count).round().astype(int)


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
