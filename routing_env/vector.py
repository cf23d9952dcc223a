"""The routing MDP as a batched Gymnasium vector environment (DESIGN sections 3.1 and 7).

:class:`RoutingVectorEnv` routes ``num_envs`` samples at once through one shared
:class:`~routing_env.network.RoutedNetwork`. Each step applies every sub-environment's chosen
module in one grouped computation (:meth:`RoutedNetwork.apply`), and finished routes are
replaced at once (same-step autoreset). Everything else is the contract of the single-sample
:class:`~routing_env.env.RoutingEnv`, which it follows sub-environment by sub-environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from routing_env.checkpoint import generator_state, restore_generator
from routing_env.datasets import MultiTaskDataset
from routing_env.mdp import INFO_KEYS, PER_ROUTE_KEYS, RoutingMDP, SampleStream
from routing_env.network import RouteGraph


class RoutingVectorEnv(RoutingMDP, VectorEnv):
    """``num_envs`` routing environments stepped together, with one shared routed network.

    ## Description

    Sub-environment ``i`` behaves as a :class:`~routing_env.env.RoutingEnv` built with the same
    keywords: the same spaces, rewards, invalid-action handling, end-of-route information and
    module training. Each step groups the batch by chosen module and computes it in one
    batched product per routed layer, so the cost per sample does not grow with the number of
    modules (DESIGN 7).

    ## Spaces

    ``single_action_space = Discrete(num_modules + 1)``, ``action_space`` its batch
    (``MultiDiscrete``); ``single_observation_space`` is the single env's ``Dict``, and
    ``observation_space`` its batch: observations are a dict of arrays ``activation``
    ``(num_envs, activation_dim)`` float32, ``task`` and ``depth`` ``(num_envs,)`` int64.

    ## Infos

    Gymnasium's vector convention, a dict of arrays each with a boolean ``_key`` mask of the
    sub-environments it holds a value for. Every step and :meth:`reset` give, for every
    sub-environment, the single env's info keys (:mod:`routing_env.mdp`) about the route now
    in progress: ``action_mask`` ``(num_envs, num_actions)`` int8, ``route_done`` (``False``:
    a finished route has already been replaced), ``correct``, ``loss``, ``prediction``,
    ``label``, ``path`` ``(num_envs, max_depth)`` int64 (the actions so far, padded with -1),
    ``sample_index``, ``final_reward`` and ``invalid_action``.

    ## Autoreset

    Same step (``autoreset_mode = metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``), as
    SB3's ``VecEnv`` expects: when a route ends, ``terminated[i]`` is ``True``, the returned
    observation is already the first of the next route, and the finished route's last
    observation and info are kept in ``infos["final_obs"]`` (an object array of single
    observations, ``None`` elsewhere) and ``infos["final_info"]`` (the same keys as columns,
    final values in the finished rows, "not final" values elsewhere) with masks
    ``infos["_final_obs"]`` and ``infos["_final_info"]``. Routes are never truncated.

    ## Order of events within a step

    All actions are checked first: an action outside the action space, or a masked one under
    ``invalid_action="raise"``, raises ``ValueError`` naming the sub-environment, before any
    state changes. The collaboration reward of every decision of the step reads the selection
    window as it stood before the step; the step's decisions then enter the window in
    sub-environment order (with ``num_envs=1`` this is the single env exactly). Routes that end
    are handed to the module trainer in sub-environment order, and then replaced.

    ## Samples and seeding

    The sub-environments draw their samples from one shared stream, in sub-environment order:
    with ``sample_order="shuffle"`` a new permutation of the split per pass (so a pass shows
    every sample once across all sub-environments), with ``"sequential"`` the split in order.
    ``reset(seed=s)`` seeds that stream and, when this environment built its network and the
    network has not been updated yet, draws the network's parameters from ``s`` too: with the
    same seed, a single :class:`~routing_env.env.RoutingEnv` and ``RoutingVectorEnv`` with
    ``num_envs=1`` route the same samples, and the same routes in the same order give the same
    parameters whatever ``num_envs`` (module batches are cut from the routes in arrival order,
    :meth:`RoutedNetwork.add_routes`). ``reset(options={"sample_index": indices})`` starts the
    sub-environments on the given samples (one index per sub-environment). ``reset()`` drops the
    routes in flight untrained, as :meth:`RoutingEnv.reset` does mid-route.

    ``network``, ``dataset``, ``num_samples`` and :meth:`action_masks` are there as on the single
    env, so ``agents.make_agent(name, vector_env)`` sizes an agent for it.

    ## Exploration squashing

    ``squash_kappa`` (``000`` eq. 7.4) works as on the single env; the marks come per
    sub-environment: :meth:`mark_exploratory` takes one boolean per sub-environment for the
    actions of the next :meth:`step`.

    ## Arguments

    ``num_envs`` (default 1), then the keywords of :class:`~routing_env.env.RoutingEnv`
    (``dataset``, ``split``, ``routing``, ``num_modules``, ``reward``,
    ``collaboration_reward``, ``invalid_action``, ``train_modules``, ``network``,
    ``flatten_observation``, ``mask_in_observation``, ...) with the same defaults and meaning;
    ``render_mode`` is not supported.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    autoreset_mode = AutoresetMode.SAME_STEP

    def __init__(
        self,
        num_envs: int = 1,
        dataset: str | os.PathLike | MultiTaskDataset = "digits-mtl",
        **kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)):
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if kwargs.pop("render_mode", None) is not None:
            raise ValueError("RoutingVectorEnv does not render; leave render_mode unset")
        RoutingMDP.__init__(self, dataset, **kwargs)
        self.num_envs = int(num_envs)
        self.single_action_space = self._route_action_space()
        self.single_observation_space = self._route_observation_space()
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        net = self.network
        n = self.num_envs
        self._names = [f"sub-environment {i}: " for i in range(n)]
        self._mask_rows = [np.repeat(row[None], n, axis=0) for row in self._masks]  # per depth
        self._every = np.ones(n, dtype=bool)
        self._never = np.zeros(n, dtype=bool)
        self._not_final_rows = self._not_final_columns(n)

        self._stream = SampleStream(np.arange(self.num_samples), self.sample_order == "shuffle")
        self._started = False
        self._h = torch.zeros((n, net.activation_dim), device=net.device)
        self._depth = np.zeros(n, dtype=np.int64)
        # The depth every sub-environment is at, or None when they differ.
        self._level: int | None = 0
        self._path = np.full((n, net.max_depth), -1, dtype=np.int64)
        self._path_length = np.zeros(n, dtype=np.int64)
        self._index = np.zeros(n, dtype=np.int64)
        self._task_now = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)
        # Exploration marks (mark_exploratory): the next step's, and each route's count.
        self._next_exploratory = np.zeros(n, dtype=bool)
        self._exploratory_count = np.zeros(n, dtype=np.int64)
        # The autograd graph of the routes in flight while every sub-environment started
        # together and moves in step (layered routing, valid actions), so that the module
        # update reuses their forward pass (RouteGraph); None otherwise, and when not training.
        self._graph: RouteGraph | None = None

    # ------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start a new route in every sub-environment (see the class docstring on seeding)."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(
                f"seed must be an int (it seeds the shared sample stream), got {seed!r}"
            )
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed, [self._stream])
        if options and "sample_index" in options:
            indices = np.asarray(options["sample_index"])
            if indices.shape != (self.num_envs,) or indices.dtype.kind not in "iu":
                raise ValueError(
                    f"options['sample_index'] must hold {self.num_envs} integer sample indices "
                    f"(one per sub-environment), got {options['sample_index']!r}"
                )
            for row, index in enumerate(indices.tolist()):
                self._check_sample_index(index, self._names[row])
            indices = indices.astype(np.int64)
        else:
            indices = self._stream.take(self.num_envs, self.np_random)
        with torch.no_grad():
            self._h = self._start(self._h, None, indices)
        self._started = True
        infos: dict[str, Any] = {}
        self._current_infos(infos)
        return self._observations(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One decision in every sub-environment; finished routes restart at once."""
        if not self._started:
            raise RuntimeError("step() called before reset()")
        actions = self._check_actions(actions, self._names)
        if self._next_exploratory.any():
            self._exploratory_count += self._next_exploratory
            self._next_exploratory = np.zeros(self.num_envs, dtype=bool)
        net = self.network
        depth, level = self._depth, self._level
        if level is None:
            allowed = self._allowed[depth, actions]
        else:
            allowed = self._allowed[level][actions]
        valid = bool(allowed.all())
        if not valid:
            self._refuse_masked(allowed, depth, actions, self._names)

        rewards = self._collaboration_rewards(
            actions, depth if level is None else level, None if valid else allowed
        )

        if self._graph is not None and not (valid and level is not None):
            self._drop_graph()  # the routes no longer move as one batch

        # The decision joins the path; modules transform the activations.
        if level is not None:
            self._path[:, level] = actions
        else:
            self._path[self._rows, self._path_length] = actions
        self._path_length += 1
        if self._recurrent:
            stop = allowed & (actions == self._extra)
            advance = ~stop if valid else allowed & ~stop
        else:
            stop = None
            advance = allowed if not valid else self._every
        with torch.no_grad():
            h = self._advance(advance, actions, valid and stop is None)
        if valid and stop is None and level is not None:
            self._depth = depth + 1
            self._level = level + 1
            done = self._every if level + 1 == net.max_depth else self._never
            ended = done
        else:
            self._depth = depth + advance
            ended = advance & (self._depth == net.max_depth)
            if stop is not None:
                ended |= stop
            done = ended if valid else ended | ~allowed
            self._level = None

        infos: dict[str, Any] = {}
        if done is self._every or (done is not self._never and done.any()):
            with torch.no_grad():
                h = self._finish(h, done, ended, valid, rewards, infos)
        self._h = h
        if self._level is None:
            depth = self._depth
            if (depth == depth[0]).all():
                self._level = int(depth[0])
        self._current_infos(infos)
        return self._observations(), rewards, done.copy(), self._never.copy(), infos

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything this env adds to its network's state to continue exactly: the sample
        stream, its random state and the routes in flight (their activations, depths, paths,
        samples and exploration counts). The recorded forward pass of the routes in flight is
        not kept: after a restore they train by recomputing it, which gives the same update."""
        return {
            "stream": self._stream.state_dict(),
            "rng": generator_state(self.np_random),
            "started": self._started,
            "h": self._h.detach().cpu().numpy().copy(),
            "depth": self._depth.copy(),
            "level": self._level,
            "path": self._path.copy(),
            "path_length": self._path_length.copy(),
            "index": self._index.copy(),
            "exploratory": self._exploratory_count.copy(),
            "next_exploratory": self._next_exploratory.copy(),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`checkpoint_state` (the network is restored separately)."""
        if np.shape(state["index"]) != (self.num_envs,):
            raise ValueError(
                f"the saved vector env had {np.shape(state['index'])[0]} sub-environments, "
                f"this one has {self.num_envs}"
            )
        self._stream.load_state_dict(state["stream"])
        restore_generator(self.np_random, state["rng"])
        self._drop_graph()
        self._started = bool(state["started"])
        self._h = torch.as_tensor(np.asarray(state["h"]), device=self.network.device)
        self._depth = np.asarray(state["depth"], dtype=np.int64).copy()
        self._level = None if state["level"] is None else int(state["level"])
        self._path = np.asarray(state["path"], dtype=np.int64).copy()
        self._path_length = np.asarray(state["path_length"], dtype=np.int64).copy()
        self._index = np.asarray(state["index"], dtype=np.int64).copy()
        self._task_now = self._task[self._index]
        self._exploratory_count = np.asarray(state["exploratory"], dtype=np.int64).copy()
        self._next_exploratory = np.asarray(state["next_exploratory"], dtype=bool).copy()

    def observe(self) -> tuple[Any, dict[str, Any]]:
        """The observations and infos of the routes in flight, as the last step returned them
        (after :meth:`restore_state`, to go on acting)."""
        infos: dict[str, Any] = {}
        self._current_infos(infos)
        return self._observations(), infos

    def mark_exploratory(self, explored: Any) -> None:
        """Which of the actions the next :meth:`step` receives were exploratory (``000``
        7.4.2), one boolean per sub-environment; see :meth:`RoutingEnv.mark_exploratory`."""
        if not self._started:
            raise RuntimeError("mark_exploratory() called before reset()")
        marks = np.asarray(explored)
        if marks.shape != (self.num_envs,) or marks.dtype.kind not in "biu":
            raise ValueError(
                f"mark_exploratory needs {self.num_envs} booleans (one per sub-environment), "
                f"got {explored!r}"
            )
        self._next_exploratory = marks.astype(bool)

    def action_masks(self) -> np.ndarray:
        """Boolean ``(num_envs, num_actions)`` mask of the allowed actions (for MaskablePPO)."""
        return self._allowed[self._depth]

    # ------------------------------------------------------------------ internals

    def _start(self, h: torch.Tensor, rows: np.ndarray | None, indices: np.ndarray) -> torch.Tensor:
        """Begin routes on samples ``indices`` in sub-environments ``rows`` (all if None)."""
        net = self.network
        index = torch.from_numpy(indices).to(net.device)
        x = self._x.index_select(0, index)
        first = _pad(net.embed(x), net.activation_dim)
        if rows is None:
            self._graph = net.record_routes(x) if self.train_modules else None
            self._depth = np.zeros(self.num_envs, dtype=np.int64)
            self._level = 0
            self._path.fill(-1)
            self._path_length = np.zeros(self.num_envs, dtype=np.int64)
            self._exploratory_count = np.zeros(self.num_envs, dtype=np.int64)
            self._next_exploratory = np.zeros(self.num_envs, dtype=bool)
            self._index = indices
            self._task_now = self._task[indices]
            return first
        self._depth[rows] = 0
        self._level = None
        self._path[rows] = -1
        self._path_length[rows] = 0
        self._exploratory_count[rows] = 0
        self._index[rows] = indices
        self._task_now[rows] = self._task[indices]
        return h.index_copy(0, torch.from_numpy(rows).to(net.device), first)

    def _advance(self, advance: np.ndarray, actions: np.ndarray, everyone: bool) -> torch.Tensor:
        """Activations after this step's modules (PASS is the identity; others unchanged)."""
        net = self.network
        h = self._h
        if self._recurrent:
            width = net.hidden_dim
            chosen = actions if everyone else np.where(advance, actions, -1)
            out = net.apply(h[:, :width], 0, chosen)
            return _pad(out, net.activation_dim)
        if everyone and self._level is not None:
            d = self._level
            out = net.apply(h[:, : net.in_dims[d]], d, actions, graph=self._graph)
            return _pad(out, net.activation_dim)
        depth = self._depth
        if not advance.any():
            return h
        h = h.clone()
        for d in np.unique(depth[advance]).tolist():
            rows = np.flatnonzero(advance & (depth == d))
            index = torch.from_numpy(rows).to(h.device)
            out = net.apply(h.index_select(0, index)[:, : net.in_dims[d]], d, actions[rows])
            h.index_copy_(0, index, _pad(out, net.activation_dim))
        return h

    def _finish(
        self,
        h: torch.Tensor,
        done: np.ndarray,
        ended: np.ndarray,
        valid: bool,
        rewards: np.ndarray,
        infos: dict[str, Any],
    ) -> torch.Tensor:
        """End the routes that are ``done``, keep their last observations and infos, and start
        new routes in their place (same-step autoreset).

        ``ended`` marks the routes that made a prediction; the others among ``done`` were
        ended by a masked action. When every route ends together with a prediction (layered
        routing, valid actions) the whole batch is used as it is, without index operations.
        """
        net = self.network
        device = h.device
        graph, self._graph = self._graph, None  # to the module trainer, or dropped
        everyone = done is self._every or bool(done.all())
        rows_done = self._rows if everyone else np.flatnonzero(done)
        all_ended = valid and (ended is done or bool((ended == done).all()))
        whole = everyone and all_ended
        judged_rows = rows_done if all_ended else np.flatnonzero(ended)

        last = h
        outputs_np = np.zeros((0, net.num_outputs), dtype=np.float32)
        if len(judged_rows):
            index = None if whole else torch.from_numpy(judged_rows).to(device)
            judged_h = h if index is None else h.index_select(0, index)
            if self._recurrent:
                outputs = net.outputs(judged_h[:, : net.hidden_dim], self._task_now[judged_rows])
                padded = _pad(outputs, net.activation_dim)
                last = padded if index is None else h.index_copy(0, index, padded)
            else:  # the last module's output is already in h
                outputs = judged_h[:, : net.num_outputs]
            outputs_np = outputs.cpu().numpy()
        keep_graph = graph is not None and whole and self.train_modules
        columns = self._end_routes(
            self._index[rows_done],
            self._path[rows_done],
            self._path_length[rows_done],
            outputs_np,
            judged=None if all_ended else ended[rows_done],
            exploratory=self._exploratory_count[rows_done] if self.squash_kappa else None,
            inputs=graph.inputs if keep_graph else None,
            graph=graph if keep_graph else None,
        )
        if graph is not None and not keep_graph:
            graph.discard()
        final = columns["final_reward"]
        if whole:
            rewards += final
        else:
            rewards[rows_done] += final

        self._keep_final(infos, last, rows_done, done, columns, everyone)
        # Same-step autoreset.
        new_indices = self._stream.take(len(rows_done), self.np_random)
        return self._start(last, None if everyone else rows_done, new_indices)

    def _keep_final(
        self,
        infos: dict[str, Any],
        last: torch.Tensor,
        rows_done: np.ndarray,
        done: np.ndarray,
        columns: dict[str, np.ndarray],
        everyone: bool,
    ) -> None:
        """Put the finished routes' last observations and infos into ``infos`` (``final_obs``,
        ``final_info``; the other rows of ``final_info`` hold "not final" values)."""
        if everyone:
            activation = last.cpu().numpy()
        else:
            index = torch.from_numpy(rows_done).to(last.device)
            activation = last.index_select(0, index).cpu().numpy()
        tasks_done = self._task_now[rows_done].tolist()
        lengths = self._path_length[rows_done].tolist()
        terminal = self._terminal_mask if self.mask_in_observation else None
        observations = self._row_observations(activation, tasks_done, lengths, terminal)
        if everyone:
            final_obs = _objects(observations, self.num_envs)
        else:
            final_obs = np.empty(self.num_envs, dtype=object)
            final_obs[rows_done] = _objects(observations, len(rows_done))
        final_info: dict[str, Any] = {}
        for key in INFO_KEYS:
            if everyone:
                column = columns[key]
            else:
                column = self._not_final_rows[key].copy()
                column[rows_done] = columns[key]
            final_info[key] = column
            final_info[f"_{key}"] = done.copy()
        infos["final_obs"] = final_obs
        infos["_final_obs"] = done.copy()
        infos["final_info"] = final_info
        infos["_final_info"] = done.copy()

    def _current_infos(self, infos: dict[str, Any]) -> None:
        """The infos of the routes now in progress (reset, and after every step)."""
        for key in INFO_KEYS:
            infos[f"_{key}"] = self._every.copy()
            if key not in PER_ROUTE_KEYS:
                infos[key] = self._not_final_rows[key].copy()
        if self._level is not None:
            infos["action_mask"] = self._mask_rows[self._level].copy()
        else:
            infos["action_mask"] = self._masks[self._depth]
        infos["path"] = self._path.copy()
        infos["sample_index"] = self._index.copy()

    def _drop_graph(self) -> None:
        """Free the graph of the routes in flight; they train by recomputation."""
        if self._graph is not None:
            self._graph.discard()
            self._graph = None

    def _observations(self) -> Any:
        masks = None
        if self.mask_in_observation:
            masks = self._masks[self._depth]
        return self._observation(
            self._h.cpu().numpy().copy(), self._task_now.copy(), self._depth.copy(), masks
        )


def _objects(items: Any, count: int) -> np.ndarray:
    """A 1-D object array of ``items`` (tuples stay elements, not rows)."""
    return np.fromiter(items, dtype=object, count=count)


def _pad(h: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad activations to ``width`` columns (the observation's ``activation_dim``)."""
    if h.shape[1] == width:
        return h
    return torch.nn.functional.pad(h, (0, width - h.shape[1]))
