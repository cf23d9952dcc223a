"""The routing MDP as a batched Gymnasium vector environment (DESIGN sections 3.1 and 7).

:class:`RoutingVectorEnv` routes ``num_envs`` samples at once through one shared
:class:`~routing_env.network.RoutedNetwork`. Each step applies every sub-environment's chosen
module in one grouped computation (:meth:`RoutedNetwork.apply`), and finished routes are
replaced at once (same-step autoreset). Everything else is the contract of the single-sample
:class:`~routing_env.env.RoutingEnv`, which it follows sub-environment by sub-environment.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from routing_env.datasets import MultiTaskDataset
from routing_env.env import RoutingEnv, squash_weight
from routing_env.network import RouteGraph
from routing_env.rewards import final_rewards, invalid_action_reward

# Keys of the end-of-route info, in the order of RoutingEnv's final info.
END_INFO_KEYS = (
    "action_mask",
    "correct",
    "loss",
    "prediction",
    "label",
    "task",
    "path",
    "sample_index",
    "final_reward",
    "invalid_action",
)


class RoutingVectorEnv(VectorEnv):
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
    sub-environments it holds a value for:

    * ``action_mask``: ``(num_envs, num_actions)`` int8, every step;
    * ``task``, ``sample_index``: for the sub-environments whose route started this step (all
      after :meth:`reset`; the autoreset ones after :meth:`step`), as in the single env's reset
      info.

    ## Autoreset

    Same step (``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``), as SB3's ``VecEnv``
    expects: when a route ends, ``terminated[i]`` is ``True``, the returned observation is
    already the first of the next route, and the finished route's last observation and info
    are kept in ``infos["final_obs"]`` (an object array of single observations, ``None``
    elsewhere) and ``infos["final_info"]`` (a dict of arrays with ``_key`` masks) with masks
    ``infos["_final_obs"]`` and ``infos["_final_info"]``. ``final_info`` holds the single env's
    end-of-route keys: ``action_mask`` (all zero), ``correct`` (bool; ``None`` objects for
    regression), ``loss`` (``nan`` for an invalid action), ``prediction`` (int, ``-1`` for an
    invalid action; regression: float array, ``nan``), ``label``, ``task``, ``path`` (object
    array of action tuples), ``sample_index``, ``final_reward`` and ``invalid_action``.
    Routes are never truncated.

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
    ``collaboration_reward``, ``invalid_action``, ``train_modules``, ``network``, ...) with the
    same defaults and meaning; ``render_mode`` is not supported.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

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
        if kwargs.get("render_mode") is not None:
            raise ValueError("RoutingVectorEnv does not render; leave render_mode unset")
        kwargs.pop("render_mode", None)
        # The single env validates the keywords, resolves the dataset, builds (or checks) the
        # network and defines the spaces: one source of truth for both forms.
        template = RoutingEnv(dataset, **kwargs)
        self.num_envs = int(num_envs)
        self.dataset = template.dataset
        self.split = template.split
        self.network = template.network
        self._owns_network = template._owns_network
        self.reward_kind = template.reward_kind
        self.train_modules = template.train_modules
        self.sample_order = template.sample_order
        self.invalid_action = template.invalid_action
        self.invalid_action_loss = template.invalid_action_loss
        self.collaboration_reward = template.collaboration_reward
        self.squash_kappa = template.squash_kappa
        self.num_samples = template.num_samples
        self.single_action_space = template.action_space
        self.single_observation_space = template.observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        net = self.network
        data = self.dataset.split(self.split)
        device = net.device
        self._x = torch.as_tensor(data.x, device=device)
        self._task = np.asarray(data.task, dtype=np.int64)
        self._task_tensor = torch.as_tensor(self._task, device=device)
        self._y = np.asarray(data.y)
        self._y_tensor = torch.as_tensor(data.y, device=device)
        self._classification = net.task_type == "classification"
        self._recurrent = net.routing == "recurrent"
        self._extra = net.extra_action
        n = self.num_envs
        masks = np.stack([net.action_mask(d) for d in range(net.max_depth + 1)])
        self._masks = masks  # int8 (max_depth + 1, num_actions)
        self._allowed = masks.astype(bool)
        self._mask_rows = [np.repeat(row[None], n, axis=0) for row in masks]  # per depth
        self._every = np.ones(n, dtype=bool)
        self._never = np.zeros(n, dtype=bool)

        self._order = np.arange(self.num_samples)
        self._position = self.num_samples  # forces a fresh order on the first reset
        self._started = False
        self._h = torch.zeros((n, net.activation_dim), device=device)
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
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new route in every sub-environment (see the class docstring on seeding)."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(
                f"seed must be an int (it seeds the shared sample stream), got {seed!r}"
            )
        super().reset(seed=seed)
        if seed is not None:
            self._position = self.num_samples
            if self._owns_network and self.network.num_updates == 0:
                self.network.reset_parameters(int(seed))
                self.network.selection_history.clear()
        if options and "sample_index" in options:
            indices = np.asarray(options["sample_index"])
            if indices.shape != (self.num_envs,) or indices.dtype.kind not in "iu":
                raise ValueError(
                    f"options['sample_index'] must hold {self.num_envs} integer sample indices "
                    f"(one per sub-environment), got {options['sample_index']!r}"
                )
            bad = (indices < 0) | (indices >= self.num_samples)
            if bad.any():
                raise ValueError(
                    f"sample_index {int(indices[bad][0])} is outside the {self.split} split "
                    f"(0..{self.num_samples - 1})"
                )
            indices = indices.astype(np.int64)
        else:
            indices = self._next_indices(self.num_envs)
        with torch.no_grad():
            self._h = self._start(self._h, None, indices)
        self._started = True
        infos = {
            "action_mask": self._mask_rows[0].copy(),
            "_action_mask": self._every.copy(),
            "task": self._task_now.copy(),
            "_task": self._every.copy(),
            "sample_index": indices.copy(),
            "_sample_index": self._every.copy(),
        }
        return self._observations(), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One decision in every sub-environment; finished routes restart at once."""
        if not self._started:
            raise RuntimeError("step() called before reset()")
        actions = self._check_actions(actions)
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
        if not valid and self.invalid_action == "raise":
            env = int(np.flatnonzero(~allowed)[0])
            mask = self._masks[depth[env]]
            raise ValueError(
                f"sub-environment {env}: action {int(actions[env])} is masked at depth "
                f"{int(depth[env])}: allowed actions are {np.flatnonzero(mask).tolist()} "
                f"(action_mask={mask.tolist()})"
            )

        # Collaboration reward and selection window (module choices only, not PASS / stop).
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        is_module = actions != self._extra
        if not valid:
            is_module &= allowed
        if self.collaboration_reward or self.train_modules:
            if level is not None and self._recurrent:
                layers: int | np.ndarray = 0
            elif level is not None:
                layers = level
            else:
                layers = 0 if self._recurrent else depth
            every_module = bool(is_module.all())
            chosen = actions if every_module else actions[is_module]
            if not every_module and not isinstance(layers, int):
                layers = layers[is_module]
            if len(chosen):
                history = net.selection_history
                if self.collaboration_reward:
                    frequency = history.frequencies(layers, chosen)
                    scale = self.collaboration_reward / net.max_depth
                    if every_module:
                        rewards += scale * frequency
                    else:
                        rewards[is_module] = scale * frequency
                if self.train_modules:
                    history.record_many(layers, chosen)

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
                h = self._finish(h, done, ended, allowed, valid, rewards, infos)
        self._h = h
        if self._level is None:
            depth = self._depth
            if (depth == depth[0]).all():
                self._level = int(depth[0])
        if self._level is not None:
            infos["action_mask"] = self._mask_rows[self._level].copy()
        else:
            infos["action_mask"] = self._masks[self._depth]
        infos["_action_mask"] = self._every.copy()
        return self._observations(), rewards, done.copy(), self._never.copy(), infos

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

    def _check_actions(self, actions: Any) -> np.ndarray:
        values = np.asarray(actions)
        if values.shape != (self.num_envs,):
            raise ValueError(
                f"actions must have shape ({self.num_envs},), one per sub-environment; "
                f"got shape {values.shape}"
            )
        if values.dtype != np.int64:
            if values.dtype.kind not in "iufb":
                raise ValueError(f"actions must be integers, got dtype {values.dtype}")
            as_int = values.astype(np.int64)
            if values.dtype.kind in "fb" and not np.array_equal(as_int, values):
                env = int(np.flatnonzero(as_int != values)[0])
                raise ValueError(f"sub-environment {env}: action {values[env]!r} is not an integer")
            values = as_int
        # One comparison catches both ends: negative actions wrap to huge unsigned values.
        outside = values.view(np.uint64) >= self.single_action_space.n
        if outside.any():
            env = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"sub-environment {env}: action {int(values[env])} is outside the action "
                f"space Discrete({self.single_action_space.n})"
            )
        return values

    def _next_indices(self, count: int) -> np.ndarray:
        """The next ``count`` samples of the shared stream (a new pass when one runs out)."""
        parts = []
        while count > 0:
            if self._position >= self.num_samples:
                self._position = 0
                if self.sample_order == "shuffle":
                    self._order = self.np_random.permutation(self.num_samples)
            take = min(count, self.num_samples - self._position)
            parts.append(self._order[self._position : self._position + take])
            self._position += take
            count -= take
        indices = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return indices.astype(np.int64)

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
        allowed: np.ndarray,
        valid: bool,
        rewards: np.ndarray,
        infos: dict[str, Any],
    ) -> torch.Tensor:
        """Pay the final rewards, train on the finished routes, fill infos, autoreset."""
        net = self.network
        n = self.num_envs
        device = h.device
        graph, self._graph = self._graph, None  # to the module trainer, or dropped
        everyone = done is self._every or bool(done.all())
        rows_done = self._rows if everyone else np.flatnonzero(done)
        all_ended = valid and (ended is done or bool((ended == done).all()))
        rows_ended = rows_done if all_ended else np.flatnonzero(ended)
        samples = self._index[rows_ended]
        labels_ended = self._y[samples]

        final = np.zeros(n, dtype=np.float64)
        loss = np.full(n, np.nan, dtype=np.float64)
        if self._classification:
            prediction = np.full(n, -1, dtype=np.int64)
            correct = np.zeros(n, dtype=bool)
        else:
            prediction = np.full((n, *self._y.shape[1:]), np.nan, dtype=np.float64)
            correct = np.full(n, None, dtype=object)
        last = h
        if len(rows_ended):
            index = None if everyone and all_ended else torch.from_numpy(rows_ended).to(device)
            ended_h = h if index is None else h.index_select(0, index)
            if self._recurrent:
                outputs = net.outputs(ended_h[:, : net.hidden_dim], self._task_now[rows_ended])
                padded = _pad(outputs, net.activation_dim)
                last = padded if index is None else h.index_copy(0, index, padded)
            else:  # the last module's output is already in h
                outputs = ended_h[:, : net.num_outputs]
            outputs_np = outputs.cpu().numpy()
            ended_loss = net.losses_numpy(outputs_np, labels_ended)
            loss[rows_ended] = ended_loss
            if self._classification:
                predicted = outputs_np.argmax(axis=1)
                hit = predicted == labels_ended
                prediction[rows_ended] = predicted
                correct[rows_ended] = hit
                final[rows_ended] = final_rewards(self.reward_kind, hit, ended_loss)
            else:
                shape = (len(rows_ended), *labels_ended.shape[1:])
                prediction[rows_ended] = outputs_np.reshape(shape)
                final[rows_ended] = -ended_loss
            if self.train_modules:
                sample = torch.from_numpy(samples).to(device)
                whole = graph is not None and everyone and all_ended
                weights = None
                if self.squash_kappa:
                    alpha = squash_weight(
                        self._exploratory_count[rows_ended],
                        self._path_length[rows_ended],
                        self.squash_kappa,
                    )
                    weights = torch.from_numpy(alpha.astype(np.float32)).to(device)
                net.add_routes(
                    graph.inputs if whole else self._x.index_select(0, sample),
                    self._task_tensor.index_select(0, sample),
                    self._y_tensor.index_select(0, sample),
                    torch.from_numpy(self._path[rows_ended]).to(device),
                    graph=graph if whole else None,
                    weights=weights,
                )
                graph = None
        if graph is not None:
            graph.discard()
        if valid:
            invalid = self._never.copy()
        else:
            invalid = ~allowed
            final[invalid] = invalid_action_reward(self.reward_kind, self.invalid_action_loss)
        rewards += final

        # The finished routes' last observations and infos.
        if everyone:
            activation = last.cpu().numpy()
        else:
            activation = last.index_select(0, torch.from_numpy(rows_done).to(device)).cpu().numpy()
        tasks_done = self._task_now[rows_done]
        lengths = self._path_length[rows_done]
        count = len(rows_done)
        final_obs = np.empty(n, dtype=object)
        final_obs[rows_done] = _objects(
            (
                {"activation": a, "task": t, "depth": d}
                for a, t, d in zip(activation, tasks_done.tolist(), lengths.tolist(), strict=True)
            ),
            count,
        )
        path_rows = self._path[rows_done].tolist()
        paths = np.empty(n, dtype=object)
        if (lengths == net.max_depth).all():
            paths[rows_done] = _objects(map(tuple, path_rows), count)
        else:
            pairs = zip(path_rows, lengths.tolist(), strict=True)
            paths[rows_done] = _objects((tuple(path[:length]) for path, length in pairs), count)
        if everyone:
            label_column = self._y[self._index]
            task_column = tasks_done
            sample_column = self._index.copy()
        else:
            label_column = np.zeros((n, *self._y.shape[1:]), dtype=self._y.dtype)
            label_column[rows_done] = self._y[self._index[rows_done]]
            task_column = np.zeros(n, dtype=np.int64)
            task_column[rows_done] = tasks_done
            sample_column = np.zeros(n, dtype=np.int64)
            sample_column[rows_done] = self._index[rows_done]
        columns = (
            self._mask_rows[net.max_depth].copy(),
            correct,
            loss,
            prediction,
            label_column,
            task_column,
            paths,
            sample_column,
            final,
            invalid,
        )
        final_info: dict[str, Any] = {}
        for key, column in zip(END_INFO_KEYS, columns, strict=True):
            final_info[key] = column
            final_info[f"_{key}"] = done.copy()
        infos["final_obs"] = final_obs
        infos["_final_obs"] = done.copy()
        infos["final_info"] = final_info
        infos["_final_info"] = done.copy()

        # Same-step autoreset.
        new_indices = self._next_indices(len(rows_done))
        h = self._start(last, None if everyone else rows_done, new_indices)
        if everyone:
            infos["task"] = self._task_now.copy()
            infos["sample_index"] = new_indices.copy()
        else:
            task_new = np.zeros(n, dtype=np.int64)
            task_new[rows_done] = self._task_now[rows_done]
            sample_new = np.zeros(n, dtype=np.int64)
            sample_new[rows_done] = new_indices
            infos["task"] = task_new
            infos["sample_index"] = sample_new
        infos["_task"] = done.copy()
        infos["_sample_index"] = done.copy()
        return h

    def _drop_graph(self) -> None:
        """Free the graph of the routes in flight; they train by recomputation."""
        if self._graph is not None:
            self._graph.discard()
            self._graph = None

    def _observations(self) -> dict[str, np.ndarray]:
        return {
            "activation": self._h.cpu().numpy().copy(),
            "task": self._task_now.copy(),
            "depth": self._depth.copy(),
        }


def _objects(items: Any, count: int) -> np.ndarray:
    """A 1-D object array of ``items`` (tuples stay elements, not rows)."""
    return np.fromiter(items, dtype=object, count=count)


def _pad(h: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad activations to ``width`` columns (the observation's ``activation_dim``)."""
    if h.shape[1] == width:
        return h
    return torch.nn.functional.pad(h, (0, width - h.shape[1]))
