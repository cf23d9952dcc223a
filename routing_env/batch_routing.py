"""Routing chosen samples of a split once, all of them at once (DESIGN 7).

Routing ``n`` samples one by one through a single-sample environment costs ``n`` times the
Python of a route; an evaluation does not need that when nothing the routes depend on changes
between them. :func:`route_samples` routes them through a
:class:`~routing_env.vector.RoutingVectorEnv` with one sub-environment per sample, built from
the environment's own settings and sharing its network: each depth is one grouped pass of the
network over every route still running, and the rewards, invalid actions, PASS / stop and
end-of-route infos are the environment's own rules, computed by the same code.

That gives the routes of one-by-one routing exactly when the routes cannot influence each
other, which :func:`batch_routing_obstacle` checks on the environment's side:

* the environment does not train its modules (``train_modules=False``): training moves the
  modules, and records the choices in the collaboration reward's selection window, from one
  route to the next. Without training, the window is read and never written, so the
  collaboration reward of every decision is the same in a batch as alone; exploration marks
  (``squash_kappa``) only weight module training, so they change nothing either;
* the network is in eval mode (its routing forward passes always are, outside an update):
  batch norm in training mode would normalise by batch statistics;
* the environment is a :class:`~routing_env.env.RoutingEnv`, bare or under Gymnasium's
  pass-through wrappers (``gym.make``'s order enforcing and environment checker), or a
  :class:`~routing_env.routing_game_v0.RoutingGame`: other wrappers, and subclasses, may
  change what the router sees or is paid.

The decisions come from the caller's ``decide(obs, masks, tasks, depth)``, called once per
depth with the observations, int8 action masks and tasks of the routes still running (all of
them at ``depth``); the policy must give each state the action it would give it alone (see
``agents.base.Agent.greedy_batchable``). Activations, outputs and losses may differ from
one-by-one routing by float rounding (a batched product adds in another order than one
sample's), as between :class:`~routing_env.env.RoutingEnv` and
:class:`~routing_env.vector.RoutingVectorEnv`; the rules applied to them are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

from routing_env.env import RoutingEnv
from routing_env.mdp import RoutingMDP
from routing_env.routing_game_v0 import RoutingGame
from routing_env.vector import RoutingVectorEnv

#: ``decide(obs, masks, tasks, depth) -> actions`` for a batch of routes at one depth.
Decide = Callable[[Any, np.ndarray, np.ndarray, int], np.ndarray]

#: Wrappers that change nothing the router sees or is paid.
PASS_THROUGH_WRAPPERS = (OrderEnforcing, PassiveEnvChecker)


@dataclass
class RoutedSamples:
    """Routes of chosen samples, one row per sample, in the order the samples were given.

    Attributes:
        final_info: the end-of-route info as columns (the keys of :mod:`routing_env.mdp`'s
            info contract: ``correct``, ``loss``, ``path``, ``sample_index``...).
        returns: each route's return, its rewards added in decision order (float64).
        tasks: each sample's task.
    """

    final_info: dict[str, np.ndarray]
    returns: np.ndarray
    tasks: np.ndarray


def batch_routing_obstacle(env: Any) -> str | None:
    """Why :func:`route_samples` would not give ``env``'s one-by-one routes, or ``None``.

    Args:
        env: a single-sample routing env (possibly wrapped) or a routing game.

    Returns:
        A sentence naming the obstacle (see the module docstring), or ``None`` when there is
        none.
    """
    inner = env
    while isinstance(inner, gym.Wrapper):
        if not isinstance(inner, PASS_THROUGH_WRAPPERS):
            return f"the env is wrapped in {type(inner).__name__}, which may change observations"
        inner = inner.env
    if type(inner) not in (RoutingEnv, RoutingGame):
        return f"{type(inner).__name__} is not a RoutingEnv or RoutingGame"
    if inner.train_modules:
        return "the env trains its modules, so each route changes the next"
    if inner.network.training:
        return "the network is in training mode (batch statistics would differ)"
    return None


def route_samples(env: Any, indices: np.ndarray, decide: Decide) -> RoutedSamples:
    """Route split samples ``indices`` of ``env`` once each, all at once, without training.

    Check :func:`batch_routing_obstacle` first: where it names an obstacle these are not the
    routes one-by-one routing would give.

    Args:
        env: the environment (or game) whose settings, split and network the routes use.
        indices: split indices to route (one route each, repeats allowed), at least one.
        decide: the policy, see the module docstring.

    Returns:
        The routes, in the order of ``indices``.
    """
    mdp: RoutingMDP = env.unwrapped
    indices = np.asarray(indices, dtype=np.int64)
    count = len(indices)
    if count == 0:
        raise ValueError("route_samples needs at least one sample index")
    envs = RoutingVectorEnv(
        count,
        mdp.dataset,
        split=mdp.split,
        network=mdp.network,
        reward=mdp.reward_kind,
        collaboration_reward=mdp.collaboration_reward,
        invalid_action=mdp.invalid_action,
        invalid_action_loss=mdp.invalid_action_loss,
        train_modules=False,
        sample_order="sequential",
        squash_kappa=mdp.squash_kappa,
        flatten_observation=mdp.flatten_observation,
        mask_in_observation=mdp.mask_in_observation,
    )
    obs, infos = envs.reset(options={"sample_index": indices})  # checks the indices
    tasks = np.asarray(mdp.dataset.split(mdp.split).task, dtype=np.int64)[indices]
    returns = np.zeros(count)
    running = np.ones(count, dtype=bool)
    ends: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    # A route makes at most max_depth decisions; a running route has made one per step.
    for depth in range(mdp.network.max_depth):
        masks = np.asarray(infos["action_mask"])
        if running.all():
            actions = np.asarray(decide(obs, masks, tasks, depth), dtype=np.int64)
        else:
            # Sub-environments whose route ended have restarted on other samples: they take
            # an allowed action, and nothing of theirs is kept.
            rows = np.flatnonzero(running)
            actions = masks.argmax(axis=1).astype(np.int64)
            actions[rows] = decide(observation_rows(obs, rows), masks[rows], tasks[rows], depth)
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        returns[running] += rewards[running]
        ended = running & (terminated | truncated)
        if ended.any():
            rows = np.flatnonzero(ended)
            final = infos["final_info"]
            ends.append((rows, {key: final[key][rows] for key in final if key[0] != "_"}))
            running &= ~ended
        if not running.any():
            break
    return RoutedSamples(_stacked(ends, count), returns, tasks)


def observation_rows(obs: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of a batch of observations (a dict of arrays or one array)."""
    if isinstance(obs, dict):
        return {key: value[rows] for key, value in obs.items()}
    return obs[rows]


def _stacked(
    ends: list[tuple[np.ndarray, dict[str, np.ndarray]]], count: int
) -> dict[str, np.ndarray]:
    """The final-info columns of the routes, gathered from the steps where they ended."""
    columns: dict[str, np.ndarray] = {}
    for rows, part in ends:
        for key, values in part.items():
            if key not in columns:
                columns[key] = np.empty((count, *values.shape[1:]), dtype=values.dtype)
            columns[key][rows] = values
    return columns
