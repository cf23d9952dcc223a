"""The routing MDP, written once for the three environments (DESIGN 2, 3.1, 3.3 and 3.6).

:class:`RoutingMDP` holds everything the single env (:class:`~routing_env.env.RoutingEnv`), the
vector env (:class:`~routing_env.vector.RoutingVectorEnv`) and the game
(:class:`~routing_env.routing_game_v0.RoutingGame`) have in common: the settings and their
validation, the network (built or adopted), the split's arrays, the sample stream and the
reseeding rule, the action checks and their errors, the rewards (final, invalid action,
collaboration, exploration-squashing weights), the end of a route (classification, module
training, end-of-route info) and the observations. The environments keep only what is their
own: one route at a time, a batch of routes, or one route per agent.

The rules work on batches of routes (NumPy arrays, one row per route): the single env and the
game call them with their one or few routes, the vector env with all of its sub-environments.

Info contract (DESIGN 3.1): every info, at reset, at every step and at a route's end, holds the
same keys with the same types and shapes, never ``None`` or NaN:

* ``action_mask`` int8 ``(num_actions,)``: 1 marks the allowed actions; once the route has
  ended every action is marked (any action can be drawn, none is acted on).
* ``route_done`` bool: the route has ended; the fields below are final only then.
* ``correct`` bool: the prediction was right (``False`` before the end, for an invalid-action
  route, and always for regression, which has no right or wrong).
* ``loss`` float: the route's loss; ``-1.0`` before the end and for an invalid-action route
  (no prediction was made).
* ``prediction``: classification an int, ``-1`` before the end and for an invalid-action route;
  regression a float (a float32 array shaped like the label for vector targets), 0 then.
* ``label``: the sample's label (int; regression float or float32 array); ``-1`` (0) before
  the end, so that an info read mid-route never shows the answer.
* ``path`` int64 ``(max_depth,)``: the actions taken so far, padded with ``-1``.
* ``sample_index`` int: the sample's index in the split.
* ``final_reward`` float: the final reward alone (without the last step's collaboration
  reward); ``0.0`` before the end.
* ``invalid_action`` bool: the route was ended by a masked action (``invalid_action="end"``).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from routing_env.datasets import MultiTaskDataset, load_suite
from routing_env.datasets.suites import canonical_suite
from routing_env.network import RoutedNetwork, RouteGraph
from routing_env.rewards import (
    FINAL_REWARDS,
    SelectionHistory,
    final_rewards,
    invalid_action_reward,
)
from routing_env.settings import NETWORK_DEFAULTS

INVALID_ACTION_MODES = ("end", "raise")
SAMPLE_ORDERS = ("shuffle", "sequential")

#: Keywords that describe the network; with ``network=`` they belong to that network already.
NETWORK_KEYWORDS = (
    "routing",
    "num_modules",
    "max_depth",
    "hidden_dim",
    "trunk",
    "readout",
    "module_lr",
    "module_optimizer",
    "module_batch_size",
    "module_lr_anneal_every",
    "device",
)

#: Network keywords whose value the network keeps as an attribute of the same name.
_RECORDED_BY_NETWORK = (
    "routing",
    "num_modules",
    "max_depth",
    "hidden_dim",
    "module_lr",
    "module_batch_size",
    "module_lr_anneal_every",
    "device",
)

#: The keys of every info, in order (see the module docstring).
INFO_KEYS = (
    "action_mask",
    "route_done",
    "correct",
    "loss",
    "prediction",
    "label",
    "path",
    "sample_index",
    "final_reward",
    "invalid_action",
)

#: The info columns that describe each route itself (its mask, actions so far and sample),
#: filled per route rather than copied from the "not final" template.
PER_ROUTE_KEYS = ("action_mask", "path", "sample_index")

#: ``loss`` of a route that has made no prediction (not ended yet, or ended by a masked action).
NO_LOSS = -1.0
#: ``prediction`` and ``label`` of classification before a route's end.
NO_CLASS = -1

_TEMPLATES_KEPT = 8  # info-column templates kept (RoutingMDP._not_final_columns)


def resolve_dataset(
    dataset: str | os.PathLike | MultiTaskDataset,
    data_dir: str | os.PathLike | None = None,
    dataset_options: dict[str, Any] | None = None,
) -> MultiTaskDataset:
    """A ``MultiTaskDataset`` from a suite name, an ``.npz`` path or a dataset object."""
    if isinstance(dataset, MultiTaskDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        text = os.fspath(dataset)
        if text.endswith(".npz"):
            return MultiTaskDataset.from_npz(text)
        try:
            name = canonical_suite(text)
        except ValueError:
            if os.path.exists(text):
                return MultiTaskDataset.from_npz(text)
            raise
        options = tuple(sorted((dataset_options or {}).items()))
        data_dir = None if data_dir is None else os.fspath(data_dir)
        return _cached_suite(name, data_dir, options)
    raise TypeError(
        "dataset must be a suite name, a path to an .npz file or a MultiTaskDataset, "
        f"not {type(dataset).__name__}"
    )


@functools.lru_cache(maxsize=8)
def _cached_suite(
    name: str, data_dir: str | None, options: tuple[tuple[str, Any], ...]
) -> MultiTaskDataset:
    """Suites are built once per process: a train and a test env share the arrays."""
    return load_suite(name, data_dir=data_dir, **dict(options))


def squash_weight(exploratory: Any, length: Any, kappa: float) -> Any:
    """``000`` eq. 7.4: ``alpha_exp = (1 - exploratory / length) ** kappa``, the factor on a
    route's module learning rate given its count of exploratory decisions and its length
    (scalars or arrays)."""
    return (1.0 - np.asarray(exploratory, dtype=np.float64) / length) ** kappa


class SampleStream:
    """The order in which routes draw their samples from a pool of split indices.

    ``shuffle=True``: a new permutation of the pool per pass, so a pass shows every sample once;
    ``False``: the pool in order. The first :meth:`take` after construction or :meth:`restart`
    begins a new pass.

    Args:
        samples: the split indices the stream draws from (the whole split, or one task's).
        shuffle: draw a new permutation per pass.
    """

    def __init__(self, samples: np.ndarray, shuffle: bool) -> None:
        self.samples = np.asarray(samples, dtype=np.int64)
        self.shuffle = bool(shuffle)
        self._order = self.samples
        self._position = len(self.samples)

    def restart(self) -> None:
        """Begin a new pass at the next :meth:`take` (after a reseed)."""
        self._position = len(self.samples)

    def state_dict(self) -> dict[str, Any]:
        """The stream's position: the pass's order and how far it has been drawn."""
        return {"order": self._order.copy(), "position": int(self._position)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        order = np.asarray(state["order"], dtype=np.int64)
        if order.shape != self.samples.shape or not np.array_equal(
            np.sort(order), np.sort(self.samples)
        ):
            raise ValueError("the saved sample order is not a pass over this stream's samples")
        self._order = order
        self._position = int(state["position"])

    def take_one(self, rng: np.random.Generator) -> int:
        """``int(take(1, rng)[0])``, without building arrays."""
        if self._position >= len(self.samples):
            self._position = 0
            if self.shuffle:
                self._order = rng.permutation(self.samples)
        self._position += 1
        return int(self._order[self._position - 1])

    def take(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """The next ``count`` split indices (int64), a new pass whenever one runs out."""
        size = len(self.samples)
        parts = []
        while count > 0:
            if self._position >= size:
                self._position = 0
                if self.shuffle:
                    self._order = rng.permutation(self.samples)
            take = min(count, size - self._position)
            parts.append(self._order[self._position : self._position + take])
            self._position += take
            count -= take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class RoutingMDP:
    """The rules of the routing MDP, shared by the single env, the vector env and the game.

    An environment class inherits from it (next to ``gymnasium.Env``, ``VectorEnv`` or
    ``pettingzoo.ParallelEnv``) and calls ``RoutingMDP.__init__`` with its keywords. The
    keywords, their defaults and their meaning are documented once, on
    :class:`~routing_env.env.RoutingEnv`.

    Its constructor is long on purpose: every keyword is validated and resolved in one place,
    in the order the docstring of :class:`~routing_env.env.RoutingEnv` lists them.

    Attributes set here and read by users: ``dataset``, ``split``, ``network``,
    ``reward_kind``, ``train_modules`` (may be switched at any time), ``sample_order``,
    ``invalid_action``, ``invalid_action_loss``, ``collaboration_reward``, ``squash_kappa``,
    ``flatten_observation``, ``mask_in_observation`` and ``num_samples``.
    """

    def __init__(
        self,
        dataset: str | os.PathLike | MultiTaskDataset = "digits-mtl",
        data_dir: str | os.PathLike | None = None,
        split: str = "train",
        routing: str | None = None,
        num_modules: int | None = None,
        max_depth: int | None = None,
        hidden_dim: int | None = None,
        reward: str | None = None,
        collaboration_reward: float = 0.0,
        collaboration_window: int = 1000,
        invalid_action: str = "end",
        invalid_action_loss: float = 10.0,
        module_lr: float | None = None,
        module_optimizer: str | Any | None = None,
        module_batch_size: int | None = None,
        module_lr_anneal_every: int | None = None,
        train_modules: bool | None = None,
        network: RoutedNetwork | None = None,
        device: str | torch.device | None = None,
        trunk: str | torch.nn.Module | None = None,
        readout: str | None = None,
        sample_order: str | None = None,
        dataset_options: dict[str, Any] | None = None,
        squash_kappa: float = 0.0,
        flatten_observation: bool = False,
        mask_in_observation: bool = False,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if invalid_action not in INVALID_ACTION_MODES:
            raise ValueError(
                f"invalid_action must be one of {INVALID_ACTION_MODES}, got {invalid_action!r}"
            )
        if not -1.0 <= collaboration_reward <= 1.0:
            raise ValueError(
                f"collaboration_reward (rho) must lie in [-1, 1], got {collaboration_reward}"
            )
        if not (isinstance(squash_kappa, numbers.Real) and 0.0 <= squash_kappa < math.inf):
            raise ValueError(f"squash_kappa must be a finite number >= 0, got {squash_kappa!r}")
        for name, value in (
            ("flatten_observation", flatten_observation),
            ("mask_in_observation", mask_in_observation),
        ):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")

        self.dataset = resolve_dataset(dataset, data_dir, dataset_options)
        self.split = split
        regression = self.dataset.task_type == "regression"
        self.reward_kind = (
            reward if reward is not None else ("neg_loss" if regression else "correct")
        )
        if self.reward_kind not in FINAL_REWARDS:
            raise ValueError(f"reward must be one of {FINAL_REWARDS}, got {reward!r}")
        if regression and self.reward_kind == "correct":
            raise ValueError(
                "a regression dataset has no correct/wrong outcome: use reward='neg_loss'"
            )

        network_options = {
            "routing": routing,
            "num_modules": num_modules,
            "max_depth": max_depth,
            "hidden_dim": hidden_dim,
            "trunk": trunk,
            "readout": readout,
            "module_lr": module_lr,
            "module_optimizer": module_optimizer,
            "module_batch_size": module_batch_size,
            "module_lr_anneal_every": module_lr_anneal_every,
            "device": device,
        }
        if network is None:
            self.network = self._build_network(network_options)
            self._owns_network = True
        else:
            self._check_same_settings(network, network_options)
            self._check_compatible(network)
            self.network = network
            self._owns_network = False

        self.train_modules = (split == "train") if train_modules is None else bool(train_modules)
        self.sample_order = sample_order or ("shuffle" if split == "train" else "sequential")
        if self.sample_order not in SAMPLE_ORDERS:
            raise ValueError(f"sample_order must be one of {SAMPLE_ORDERS}, got {sample_order!r}")
        self.invalid_action = invalid_action
        self.invalid_action_loss = float(invalid_action_loss)
        self.collaboration_reward = float(collaboration_reward)
        self.squash_kappa = float(squash_kappa)
        self.flatten_observation = bool(flatten_observation)
        self.mask_in_observation = bool(mask_in_observation)
        net = self.network
        if not hasattr(net, "selection_history"):
            layers = 1 if net.routing == "recurrent" else net.max_depth
            # Kept on the network so every env sharing the modules sees the same statistics.
            net.selection_history = SelectionHistory(
                layers, net.num_actions, collaboration_window
            )

        data = self.dataset.split(split)
        device = net.device
        self.num_samples = len(data)
        self._x = torch.as_tensor(data.x, device=device)
        self._task = np.asarray(data.task, dtype=np.int64)
        self._task_tensor = torch.as_tensor(self._task, device=device)
        self._y = np.asarray(data.y)
        self._y_tensor = torch.as_tensor(data.y, device=device)
        self._classification = net.task_type == "classification"
        self._recurrent = net.routing == "recurrent"
        self._extra = net.extra_action
        # Row d: the mask of depth d; the last row (max_depth) is the terminal mask, every
        # action marked so that a masked sampler can draw from it (no one acts on it).
        masks = np.stack([net.action_mask(d) for d in range(net.max_depth)])
        self._masks = np.concatenate([masks, np.ones((1, net.num_actions), dtype=np.int8)])
        self._allowed = self._masks.astype(bool)
        self._terminal_mask = self._masks[net.max_depth]
        label_shape = self._y.shape[1:]
        self._not_final: dict[str, Any] = {
            "route_done": False,
            "correct": False,
            "loss": NO_LOSS,
            "prediction": NO_CLASS,
            "label": NO_CLASS,
            "final_reward": 0.0,
            "invalid_action": False,
        }
        if not self._classification:
            # Scalar targets give float predictions and labels, vector targets float32 arrays.
            blank = 0.0 if label_shape == () else np.zeros(label_shape, dtype=np.float32)
            self._not_final["prediction"] = blank
            self._not_final["label"] = blank
        self._eye_task = np.eye(self.dataset.num_tasks, dtype=np.float32)
        self._eye_depth = np.eye(net.max_depth + 1, dtype=np.float32)
        self._column_templates: dict[int, dict[str, np.ndarray]] = {}
        # One route's "not final" info in key order (the per-route keys filled per info), and
        # the values that are arrays, which each info gets a copy of.
        self._info_template = {key: self._not_final.get(key) for key in INFO_KEYS}
        self._info_arrays = tuple(
            key for key, value in self._not_final.items() if isinstance(value, np.ndarray)
        )

    # ------------------------------------------------------------------ construction

    def _build_network(self, options: dict[str, Any]) -> RoutedNetwork:
        dataset = self.dataset
        defaults = {
            **NETWORK_DEFAULTS,
            "num_modules": dataset.num_tasks,
            "trunk": "conv" if len(dataset.input_shape) == 3 else "none",
        }
        chosen = {
            name: defaults[name] if value is None else value for name, value in options.items()
        }
        return RoutedNetwork(
            dataset.input_shape,
            dataset.num_tasks,
            dataset.num_outputs,
            task_type=dataset.task_type,
            seed=0,
            **chosen,
        )

    @staticmethod
    def _check_same_settings(network: RoutedNetwork, options: Mapping[str, Any]) -> None:
        """With ``network=``, network keywords may be given only with the network's own values
        (passing one set of keywords to a train and a test env is the natural pattern)."""
        for name, value in options.items():
            if value is None:
                continue
            if name not in _RECORDED_BY_NETWORK:
                raise ValueError(
                    f"network= was given, so {name} cannot be set here: it is a property of "
                    "that network (leave it unset)"
                )
            own = getattr(network, name)
            same = torch.device(value) == own if name == "device" else own == value
            if not same:
                raise ValueError(
                    f"network= was given with {name}={value!r}, but that network has "
                    f"{name}={own!r}: leave {name} unset or give the network's value"
                )

    def _check_compatible(self, network: RoutedNetwork) -> None:
        dataset = self.dataset
        expected = {
            "input_shape": tuple(dataset.input_shape),
            "num_tasks": dataset.num_tasks,
            "num_outputs": dataset.num_outputs,
            "task_type": dataset.task_type,
        }
        for name, value in expected.items():
            if getattr(network, name) != value:
                raise ValueError(
                    f"network= does not fit dataset {dataset.name!r}: the network's {name} is "
                    f"{getattr(network, name)!r}, the dataset needs {value!r}"
                )

    # ------------------------------------------------------------------ spaces

    def _route_action_space(self) -> spaces.Discrete:
        """``Discrete(num_modules + 1)``: a module of the current layer, or PASS / stop."""
        return spaces.Discrete(self.network.num_actions)

    def _flat_route_space(self) -> spaces.Box:
        """The ``Box`` of a flattened observation: activation ⊕ one-hot(task) ⊕ one-hot(depth),
        unbounded on the activation, in ``[0, 1]`` on the one-hots."""
        net = self.network
        ones = self.dataset.num_tasks + net.max_depth + 1
        low = np.concatenate([np.full(net.activation_dim, -np.inf), np.zeros(ones)])
        high = np.concatenate([np.full(net.activation_dim, np.inf), np.ones(ones)])
        return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def _route_observation_space(self) -> spaces.Space:
        """One route's observation space, as the observation options shape it."""
        net = self.network
        if self.flatten_observation:
            parts: dict[str, spaces.Space] = {"observation": self._flat_route_space()}
        else:
            parts = {
                "activation": spaces.Box(
                    -np.inf, np.inf, shape=(net.activation_dim,), dtype=np.float32
                ),
                "task": spaces.Discrete(self.dataset.num_tasks),
                "depth": spaces.Discrete(net.max_depth + 1),
            }
        if self.mask_in_observation:
            parts["action_mask"] = spaces.Box(0, 1, shape=(net.num_actions,), dtype=np.int8)
        elif self.flatten_observation:
            return parts["observation"]
        return spaces.Dict(parts)

    def _observation(
        self, activation: np.ndarray, task: Any, depth: Any, mask: np.ndarray | None
    ) -> Any:
        """The observation of one route (``activation`` 1-D, ``task`` and ``depth`` ints) or of
        a batch (2-D ``activation``, arrays), as the observation options shape it (``mask`` is
        read only with ``mask_in_observation``)."""
        if self.flatten_observation:
            flat = np.concatenate(
                [activation, self._eye_task[task], self._eye_depth[depth]], axis=-1
            )
            if not self.mask_in_observation:
                return flat
            return {"observation": flat, "action_mask": mask}
        observation = {"activation": activation, "task": task, "depth": depth}
        if self.mask_in_observation:
            observation["action_mask"] = mask
        return observation

    def _row_observations(
        self, activation: np.ndarray, tasks: list[int], depths: list[int], mask: np.ndarray | None
    ) -> list[Any]:
        """:meth:`_observation` of each row of a batch (``tasks`` and ``depths`` ints), as
        single observations; each gets its own copy of ``mask`` (read only with
        ``mask_in_observation``)."""
        if not (self.flatten_observation or self.mask_in_observation):
            # The default layout, built directly: this runs once per finished route.
            return [
                {"activation": row, "task": task, "depth": depth}
                for row, task, depth in zip(activation, tasks, depths, strict=True)
            ]
        return [
            self._observation(row, task, depth, None if mask is None else mask.copy())
            for row, task, depth in zip(activation, tasks, depths, strict=True)
        ]

    # ------------------------------------------------------------------ seeding and samples

    def _reseed(self, seed: int, streams: Sequence[SampleStream]) -> None:
        """``reset(seed=s)``: restart the sample streams and, when this environment built its
        network and the network has not been updated yet, draw its parameters from ``s`` (and
        forget the selection history), so that one seed fixes everything."""
        for stream in streams:
            stream.restart()
        if self._owns_network and self.network.num_updates == 0:
            self.network.reset_parameters(int(seed))
            self.network.selection_history.clear()

    def _check_sample_index(self, index: Any, who: str = "") -> int:
        value = int(index)
        if value != index or not 0 <= value < self.num_samples:
            raise ValueError(
                f"{who}sample index {index!r} is outside the {self.split} split "
                f"(0..{self.num_samples - 1})"
            )
        return value

    # ------------------------------------------------------------------ actions

    def _check_actions(self, actions: Any, names: Sequence[str]) -> np.ndarray:
        """The actions as int64, one per route; raises ``ValueError`` naming the route (by
        ``names``: ``""``, ``"sub-environment i: "`` or ``"router_t: "``) whose action is not
        an integer of the action space."""
        values = np.asarray(actions)
        if values.shape != (len(names),):
            raise ValueError(
                f"actions must have shape ({len(names)},), one per route; "
                f"got shape {values.shape}"
            )
        if values.dtype != np.int64:
            if values.dtype.kind not in "iufb":
                row = next(
                    i
                    for i, value in enumerate(values.tolist())
                    if np.asarray(value).dtype.kind not in "iufb"
                )
                raise ValueError(f"{names[row]}action must be an integer, got {values[row]!r}")
            as_int = values.astype(np.int64)
            if values.dtype.kind in "fb" and not np.array_equal(as_int, values):
                row = int(np.flatnonzero(as_int != values)[0])
                raise ValueError(f"{names[row]}action {values[row]!r} is not an integer")
            values = as_int
        # One comparison catches both ends: negative actions wrap to huge unsigned values.
        outside = values.view(np.uint64) >= self.network.num_actions
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"{names[row]}action {int(values[row])} is outside the action space "
                f"Discrete({self.network.num_actions})"
            )
        return values

    def _refuse_masked(
        self, allowed: np.ndarray, depths: np.ndarray, actions: np.ndarray, names: Sequence[str]
    ) -> None:
        """Under ``invalid_action="raise"``, raise ``ValueError`` for the first masked action
        (before any state changes); under ``"end"`` masked actions end their routes."""
        if self.invalid_action != "raise" or allowed.all():
            return
        row = int(np.flatnonzero(~allowed)[0])
        depth = int(depths[row])
        mask = self._masks[depth]
        raise ValueError(
            f"{names[row]}action {int(actions[row])} is masked at depth {depth}: allowed "
            f"actions are {np.flatnonzero(mask).tolist()} (action_mask={mask.tolist()})"
        )

    # ------------------------------------------------------------------ rewards

    def _collaboration_rewards(
        self, actions: np.ndarray, depths: np.ndarray | int, counted: np.ndarray | None
    ) -> np.ndarray:
        """The collaboration reward of each decision, and the selection window updated.

        ``001`` 3.1.1, ``000`` 3.1.2.2: choosing module ``a`` pays ``rho / max_depth * C(a)``,
        ``C(a)`` read from the window as it stood before these decisions; the module choices
        then enter the window in route order (while the modules train). PASS / stop, and the
        decisions ``counted`` marks ``False`` (masked actions), pay nothing and are not recorded.
        ``depths`` is one depth for all or one per decision.
        """
        rewards = np.zeros(len(actions), dtype=np.float64)
        if not (self.collaboration_reward or self.train_modules):
            return rewards
        is_module = actions != self._extra
        if counted is not None:
            is_module &= counted
        layers: int | np.ndarray = 0 if self._recurrent else depths
        every = bool(is_module.all())
        chosen = actions if every else actions[is_module]
        if not every and not isinstance(layers, (int, np.integer)):
            layers = layers[is_module]
        if len(chosen):
            history = self.network.selection_history
            if self.collaboration_reward:
                frequency = history.frequencies(layers, chosen)
                scale = self.collaboration_reward / self.network.max_depth
                if every:
                    rewards += scale * frequency
                else:
                    rewards[is_module] = scale * frequency
            if self.train_modules and len(chosen) == 1:
                # One decision (the single env): record() spares record_many's vectorising.
                history.record(int(np.asarray(layers).reshape(-1)[0]), int(chosen[0]))
            elif self.train_modules:
                history.record_many(layers, chosen)
        return rewards

    def _collaboration_reward(self, action: int, depth: int) -> float:
        """:meth:`_collaboration_rewards` of one allowed decision (the single env's step)."""
        if action == self._extra or not (self.collaboration_reward or self.train_modules):
            return 0.0
        layer = 0 if self._recurrent else depth
        history = self.network.selection_history
        reward = 0.0
        if self.collaboration_reward:
            scale = self.collaboration_reward / self.network.max_depth
            reward += scale * history.frequency(layer, action)
        if self.train_modules:
            history.record(layer, action)
        return float(reward)

    # ------------------------------------------------------------------ the end of a route

    def _end_routes(
        self,
        samples: np.ndarray,
        paths: np.ndarray,
        lengths: np.ndarray,
        outputs: np.ndarray,
        judged: np.ndarray | None = None,
        exploratory: np.ndarray | None = None,
        inputs: torch.Tensor | None = None,
        graph: RouteGraph | None = None,
    ) -> dict[str, np.ndarray]:
        """End routes: classify them, pay the final rewards, train the modules on them.

        Args:
            samples: ``(B,)`` split indices of the routes.
            paths: ``(B, max_depth)`` actions, padded with -1 (the masked action included).
            lengths: ``(B,)`` decisions per route.
            outputs: the network's outputs (logits or regression values) of the routes that
                made a prediction, one row per ``judged`` route.
            judged: ``(B,)`` which routes made a prediction; the others were ended by a masked
                action (``None``: all made one).
            exploratory: ``(B,)`` exploratory decisions per route (``000`` eq. 7.4), or
                ``None`` (none).
            inputs, graph: the judged routes' inputs and recorded forward pass, when the
                caller kept them (the vector env); else the inputs are gathered here.

        Returns:
            The end-of-route info as columns, one row per route (see the module docstring).
            Judged routes enter the module trainer in order, each with its squashing weight
            when ``squash_kappa > 0``; routes ended by a masked action train nothing and pay
            the worst final reward (:func:`~routing_env.rewards.invalid_action_reward`).
        """
        count = len(samples)
        # The module trainer keeps the paths until its next update: they must not share memory
        # with the caller's buffers or with the info returned to users.
        paths = np.array(paths, dtype=np.int64)
        every = judged is None
        rows = slice(None) if every else np.flatnonzero(judged)
        judged_samples = samples if every else samples[rows]
        labels = self._y[samples]
        columns = self._not_final_columns(count, set_by_caller=PER_ROUTE_KEYS)
        columns["route_done"][:] = True
        columns["action_mask"] = np.repeat(self._terminal_mask[None], count, axis=0)
        columns["path"] = paths.copy()
        columns["sample_index"] = np.array(samples, dtype=np.int64)
        columns["label"][:] = labels
        if not every:
            columns["invalid_action"] = ~judged
            columns["final_reward"][~judged] = invalid_action_reward(
                self.reward_kind, self.invalid_action_loss
            )
        if len(judged_samples):
            loss = self.network.losses_numpy(outputs, self._y[judged_samples])
            columns["loss"][rows] = loss
            if self._classification:
                predicted = outputs.argmax(axis=1)
                hit = predicted == self._y[judged_samples]
                columns["prediction"][rows] = predicted
                columns["correct"][rows] = hit
            else:
                hit = np.zeros(len(judged_samples), dtype=bool)
                shape = (len(judged_samples), *self._y.shape[1:])
                columns["prediction"][rows] = outputs.reshape(shape)
            columns["final_reward"][rows] = final_rewards(self.reward_kind, hit, loss)
            if self.train_modules:
                self._train_on(
                    judged_samples,
                    paths if every else paths[rows],
                    lengths if every else lengths[rows],
                    None if exploratory is None else exploratory[rows],
                    inputs,
                    graph,
                )
        return {key: columns[key] for key in INFO_KEYS}

    def _train_on(
        self,
        samples: np.ndarray,
        paths: np.ndarray,
        lengths: np.ndarray,
        exploratory: np.ndarray | None,
        inputs: torch.Tensor | None,
        graph: RouteGraph | None,
    ) -> None:
        """Hand finished routes, in order, to the module trainer (``001`` Algorithm 2, step 3)."""
        net = self.network
        device = net.device
        weights = None
        if self.squash_kappa:
            counts = np.zeros(len(samples)) if exploratory is None else exploratory
            alpha = squash_weight(counts, lengths, self.squash_kappa)
            weights = torch.from_numpy(alpha.astype(np.float32)).to(device)
        if len(samples) == 1:
            # One route (the single env): slices are views, cheaper than three gathers; the
            # trainer copies them when it joins its queue into a module batch.
            rows = slice(int(samples[0]), int(samples[0]) + 1)
            x, task, y = self._x[rows], self._task_tensor[rows], self._y_tensor[rows]
        else:
            index = torch.from_numpy(samples).to(device)
            x = self._x.index_select(0, index)
            task = self._task_tensor.index_select(0, index)
            y = self._y_tensor.index_select(0, index)
        routes = torch.from_numpy(paths)
        net.add_routes(
            x if inputs is None else inputs,
            task,
            y,
            routes if device.type == "cpu" else routes.to(device),
            graph=graph,
            weights=weights,
        )

    # ------------------------------------------------------------------ infos

    def _not_final_columns(
        self, count: int, set_by_caller: tuple[str, ...] = ()
    ) -> dict[str, np.ndarray]:
        """Info columns of ``count`` routes still running (paths and samples left empty); the
        columns named in ``set_by_caller`` are left out, for the caller to fill.

        Fresh arrays, copied from a template kept per count (a few counts are kept: the single
        env ends one route at a time, the vector env mostly its whole batch), which costs less
        than building each column anew at every route's end."""
        template = self._column_templates.get(count)
        if template is None:
            template = self._new_columns(count)
            if len(self._column_templates) >= _TEMPLATES_KEPT:
                del self._column_templates[next(iter(self._column_templates))]
            self._column_templates[count] = template
        return {
            key: column.copy() for key, column in template.items() if key not in set_by_caller
        }

    def _new_columns(self, count: int) -> dict[str, np.ndarray]:
        """:meth:`_not_final_columns` built from the "not final" values."""
        columns = {
            "action_mask": np.zeros((count, self.network.num_actions), dtype=np.int8),
            "path": np.full((count, self.network.max_depth), -1, dtype=np.int64),
            "sample_index": np.zeros(count, dtype=np.int64),
        }
        for key, value in self._not_final.items():
            columns[key] = _column(value, count)
        return {key: columns[key] for key in INFO_KEYS}

    def _route_info(self, mask: np.ndarray, path: np.ndarray, sample_index: int) -> dict[str, Any]:
        """The info of one route still running: its mask, path so far and sample."""
        info = self._info_template.copy()
        for key in self._info_arrays:
            info[key] = info[key].copy()
        info["action_mask"] = mask.copy()
        info["path"] = path.copy()
        info["sample_index"] = int(sample_index)
        return info

    @staticmethod
    def _info_row(columns: Mapping[str, np.ndarray], row: int) -> dict[str, Any]:
        """Row ``row`` of info columns as one route's info (Python scalars, arrays)."""
        info = {}
        for key, column in columns.items():
            value = column[row]
            info[key] = value.item() if isinstance(value, np.generic) else value.copy()
        return info


def describe_route(
    network: RoutedNetwork,
    path: Sequence[int],
    sample_index: int,
    task: int,
    final_info: Mapping[str, Any] | None = None,
) -> str:
    """One line of ``render_mode="ansi"``: a route's modules so far and, once it ended
    (``final_info`` given), its outcome."""
    names = []
    for depth, action in enumerate(a for a in path if a >= 0):
        layer = "bank" if network.routing == "recurrent" else f"L{depth}"
        if action == network.extra_action:
            names.append("STOP" if network.routing == "recurrent" else f"{layer}:PASS")
        else:
            names.append(f"{layer}:m{action}")
    route = " -> ".join(names) if names else "(no decision yet)"
    line = f"sample {sample_index} task {task} | {route}"
    if final_info is not None:
        if final_info["invalid_action"]:
            line += " | invalid action"
        elif network.task_type != "classification":
            line += f" | loss {final_info['loss']:.4f}"
        else:
            verdict = "correct" if final_info["correct"] else "wrong"
            line += (
                f" | predicted {final_info['prediction']} label {final_info['label']} {verdict}"
            )
    return line



def _column(value: Any, count: int) -> np.ndarray:
    """``count`` copies of one info value as a column of the info's own type."""
    if isinstance(value, bool):
        return np.full(count, value, dtype=np.bool_)
    if isinstance(value, int):
        return np.full(count, value, dtype=np.int64)
    if isinstance(value, float):
        return np.full(count, value, dtype=np.float64)
    return np.repeat(np.asarray(value)[None], count, axis=0)
