"""The routing MDP as a Gymnasium environment (DESIGN sections 2 and 3.1)."""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from routing_env.datasets import MultiTaskDataset, load_suite
from routing_env.network import RoutedNetwork
from routing_env.rewards import (
    FINAL_REWARDS,
    SelectionHistory,
    final_reward,
    invalid_action_reward,
)

INVALID_ACTION_MODES = ("end", "raise")
SAMPLE_ORDERS = ("shuffle", "sequential")

# Keywords that describe the network; with `network=` they belong to that network already.
_NETWORK_KEYWORDS = (
    "routing",
    "num_modules",
    "max_depth",
    "hidden_dim",
    "trunk",
    "readout",
    "module_lr",
    "module_optimizer",
    "module_batch_size",
    "device",
)


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
        if text.endswith(".npz") or os.path.sep in text:
            return MultiTaskDataset.from_npz(text)
        options = tuple(sorted((dataset_options or {}).items()))
        data_dir = None if data_dir is None else os.fspath(data_dir)
        return _cached_suite(text, data_dir, options)
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


class RoutingEnv(gym.Env):
    """Route one sample at a time through trainable modules; the agent is the router.

    ## Description

    A routing network (``001`` section 3, ``000`` section 3.1.1) composes modules per sample.
    Each episode is one sample's route: the sample passes through a shared trunk, then at each
    step the agent picks a module (or PASS / stop ⊥) that transforms the activation. When the
    route ends the environment classifies the result, pays the final reward and hands the route
    to the module trainer: the environment owns the modules, the data and the module optimizer
    and trains the modules on the routes its agent chooses (``001`` Algorithm 2). The dynamics
    therefore drift as the agent learns, unless ``train_modules=False``.

    Two routing modes: ``"layered"`` (routed layer ``d`` offers its own modules at depth ``d``;
    the last layer emits logits; exactly ``max_depth`` decisions) and ``"recurrent"`` (one bank
    of modules reused at every depth; the route ends on ⊥ or after ``max_depth`` modules; a
    readout emits the logits).

    ## Action Space

    ``Discrete(num_modules + 1)``: action ``a < num_modules`` applies module ``a`` of the
    current layer; the last action is PASS (layered: identity, allowed only where the layer's
    input and output sizes match) or ⊥ (recurrent: end the route now). ``info["action_mask"]``
    (and :meth:`action_masks`) marks the allowed actions with 1. An action outside the space
    raises ``ValueError``. A masked action is handled by ``invalid_action``: ``"end"`` ends
    the route as a wrong prediction (``info["invalid_action"] = True``, no module training),
    ``"raise"`` raises ``ValueError``.

    ## Observation Space

    ``Dict(activation=Box(-inf, inf, (activation_dim,), float32), task=Discrete(num_tasks),
    depth=Discrete(max_depth + 1))``. ``activation`` is the current activation (after the
    trunk, then after each applied module), zero-padded to ``activation_dim``, the largest
    activation size in the network; in the terminal observation it holds the route's output
    (logits). ``task`` is the sample's task id (0 in single-task data), ``depth`` the number of
    decisions made.

    ## Rewards

    Final reward when the route ends (``000`` 3.1.2.1): ``+1`` / ``-1`` for a correct / wrong
    prediction (``reward="correct"``, the default for classification) or ``-loss``
    (``reward="neg_loss"``, the default and only choice for regression). An invalid action
    under ``"end"`` pays ``-1`` (``"correct"``) or ``-invalid_action_loss`` (``"neg_loss"``).
    Optional collaboration reward after every module choice (``001`` 3.1.1, ``000`` 3.1.2.2):
    ``collaboration_reward / max_depth * C(a)``, ``C(a)`` the share of the last
    ``collaboration_window`` decisions at that layer that chose ``a``
    (see :mod:`routing_env.rewards`). Returns are undiscounted (``gamma = 1``).

    ## Starting State

    A sample drawn from the split (``sample_order="shuffle"``: a new permutation per pass,
    the default for ``split="train"``; ``"sequential"``: in order, the default for
    ``split="test"``), embedded by the trunk, at depth 0. ``reset(options={"sample_index": i})``
    routes sample ``i`` instead. ``reset(seed=s)`` seeds the sample order and, when this
    environment built its network and the network has not been updated yet, draws the
    network's parameters from ``s`` too, so one seed fixes everything.

    ## Episode End

    Terminated when the route ends: after ``max_depth`` decisions (layered), on ⊥ or after
    ``max_depth`` modules (recurrent), or on an invalid action under ``"end"``. Never
    truncated. The last ``info`` holds ``correct``, ``loss``, ``prediction``, ``label``,
    ``task``, ``path`` (tuple of actions), ``sample_index``, ``final_reward`` (the final reward
    alone, without the last step's collaboration reward) and ``invalid_action``; for
    regression ``correct`` is ``None``; for an invalid-action route ``prediction`` is ``None``
    and ``loss`` is ``nan`` (no prediction was made). Stepping after the end raises.

    ## Arguments

    * ``dataset``: a suite name (``"digits-mtl"``, ``"mnist1d-mtl"``, ``"synthetic-mtl"``,
      ``"fashion-mtl"``, ``"mnist-mtl"``, ``"cifar-mtl"``, ``"regression-two-mode"``), a path
      to an ``.npz`` file (see ``MultiTaskDataset.from_npz``) or a ``MultiTaskDataset``.
    * ``data_dir``: folder of the files of suites read from disk.
    * ``dataset_options``: extra keywords for the suite builder (e.g. ``{"per_class": 200}``).
    * ``split``: ``"train"`` or ``"test"``.
    * ``routing``: ``"layered"`` (default) or ``"recurrent"``.
    * ``num_modules``: modules per layer / in the bank (default: the number of tasks, as in
      ``001`` section 4).
    * ``max_depth``: routed layers / longest route (default 3).
    * ``hidden_dim``: activation size between modules (default 64).
    * ``trunk``: ``"none"``, ``"mlp"``, ``"conv"`` or an ``nn.Module`` (default ``"conv"`` for
      image inputs, else ``"none"``).
    * ``readout``: ``"shared"`` (default) or ``"per_task"``, recurrent routing only.
    * ``reward``: ``"correct"`` or ``"neg_loss"``.
    * ``collaboration_reward``: ``rho`` in ``[-1, 1]`` (default 0: off).
    * ``collaboration_window``: decisions per layer that ``C(a)`` counts (default 1000).
    * ``invalid_action``: ``"end"`` (default) or ``"raise"``.
    * ``invalid_action_loss``: the loss charged for an invalid action under ``"neg_loss"``
      (default 10).
    * ``module_lr`` (default 0.1), ``module_optimizer`` (default ``"sgd"``; ``"adam"``,
      ``"rmsprop"``, ``"adagrad"`` or a callable), ``module_batch_size`` (finished routes per
      module update, default 16).
    * ``train_modules``: train the modules on this environment's routes (default ``True`` for
      ``split="train"``, ``False`` for ``"test"``). ``False`` makes the MDP stationary (the
      control condition of DESIGN 6); the attribute may be switched later, e.g. to freeze
      pretrained modules (:func:`agents.training.pretrain_modules`).
    * ``squash_kappa``: exponent ``kappa >= 0`` of the exploration squashing of ``000``
      section 7.4.2, eq. 7.4 (default 0: off). A finished route of length ``n`` with ``e``
      decisions marked exploratory (:meth:`mark_exploratory`) enters the module update with
      the weight ``(1 - e / n) ** kappa`` on its loss: under plain SGD its modules learn at
      that fraction of ``module_lr`` (see :meth:`RoutedNetwork.update` for adaptive
      optimizers). A large ``kappa`` stops training on every route with an exploratory step.
    * ``network``: a :class:`~routing_env.network.RoutedNetwork` to use instead of building one
      (share a trained network between a train and a test env). The network keywords above
      must then be left unset.
    * ``sample_order``: ``"shuffle"`` or ``"sequential"``.
    * ``device``: torch device of the network (default ``"cpu"``).
    * ``render_mode``: ``None`` or ``"ansi"`` (a text line showing the route so far).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

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
        train_modules: bool | None = None,
        network: RoutedNetwork | None = None,
        device: str | torch.device | None = None,
        trunk: str | torch.nn.Module | None = None,
        readout: str | None = None,
        sample_order: str | None = None,
        dataset_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
        squash_kappa: float = 0.0,
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
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if not (isinstance(squash_kappa, numbers.Real) and 0.0 <= squash_kappa < math.inf):
            raise ValueError(f"squash_kappa must be a finite number >= 0, got {squash_kappa!r}")

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
            "device": device,
        }
        if network is None:
            self.network = self._build_network(network_options)
            self._owns_network = True
        else:
            given = [name for name in _NETWORK_KEYWORDS if network_options[name] is not None]
            if given:
                raise ValueError(
                    f"network= was given, so {', '.join(given)} cannot be set here: "
                    "they are properties of that network"
                )
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
        if not hasattr(self.network, "selection_history"):
            layers = 1 if self.network.routing == "recurrent" else self.network.max_depth
            # Kept on the network so every env sharing the modules sees the same statistics.
            self.network.selection_history = SelectionHistory(
                layers, self.network.num_actions, collaboration_window
            )
        self.render_mode = render_mode

        data = self.dataset.split(split)
        device = self.network.device
        self._x = torch.as_tensor(data.x, device=device)
        self._task = data.task
        self._task_tensor = torch.as_tensor(data.task, device=device)
        self._y = data.y
        self._y_tensor = torch.as_tensor(data.y, device=device)
        self.num_samples = len(data)

        net = self.network
        self.action_space = spaces.Discrete(net.num_actions)
        self.observation_space = spaces.Dict(
            {
                "activation": spaces.Box(
                    -np.inf, np.inf, shape=(net.activation_dim,), dtype=np.float32
                ),
                "task": spaces.Discrete(self.dataset.num_tasks),
                "depth": spaces.Discrete(net.max_depth + 1),
            }
        )

        self._order = np.arange(self.num_samples)
        self._position = self.num_samples  # forces a fresh order on the first reset
        self._route_active = False
        self._ended = False
        self._h = np.zeros(0, dtype=np.float32)
        self._depth = 0
        self._path: list[int] = []
        self._index = -1
        self._last_info: dict[str, Any] = {}
        # Exploration marks (mark_exploratory): the next decision's, and the route's count.
        self._next_exploratory = False
        self._exploratory_count = 0

    # ------------------------------------------------------------------ construction

    def _build_network(self, options: dict[str, Any]) -> RoutedNetwork:
        dataset = self.dataset
        defaults = {
            "routing": "layered",
            "num_modules": dataset.num_tasks,
            "max_depth": 3,
            "hidden_dim": 64,
            "trunk": "conv" if len(dataset.input_shape) == 3 else "none",
            "readout": "shared",
            "module_lr": 0.1,
            "module_optimizer": "sgd",
            "module_batch_size": 16,
            "device": "cpu",
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

    # ------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._position = self.num_samples
            if self._owns_network and self.network.num_updates == 0:
                self.network.reset_parameters(seed)
                self.network.selection_history.clear()
        if options and "sample_index" in options:
            index = int(options["sample_index"])
            if not 0 <= index < self.num_samples:
                raise ValueError(
                    f"sample_index {index} is outside the {self.split} split "
                    f"(0..{self.num_samples - 1})"
                )
        else:
            index = self._next_index()
        self._index = index
        self._h = self.network.embed_sample(self._x[index])
        self._depth = 0
        self._path = []
        self._next_exploratory = False
        self._exploratory_count = 0
        self._route_active = True
        self._ended = False
        info = {
            "action_mask": self.network.action_mask(0).copy(),
            "task": int(self._task[index]),
            "sample_index": index,
        }
        self._last_info = info
        return self._observation(self._h), info

    def _next_index(self) -> int:
        if self._position >= self.num_samples:
            self._position = 0
            if self.sample_order == "shuffle":
                self._order = self.np_random.permutation(self.num_samples)
        index = int(self._order[self._position])
        self._position += 1
        return index

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if not self._route_active:
            if self._ended:
                raise RuntimeError(
                    "step() called after the route ended (terminated=True); call reset() first"
                )
            raise RuntimeError("step() called before reset()")
        action = self._check_action(action)
        self._exploratory_count += self._next_exploratory
        self._next_exploratory = False
        net = self.network
        mask = net.action_mask(self._depth)
        if not mask[action]:
            if self.invalid_action == "raise":
                raise ValueError(
                    f"action {action} is masked at depth {self._depth}: allowed actions are "
                    f"{np.flatnonzero(mask).tolist()} (action_mask={mask.tolist()})"
                )
            return self._end_invalid(action)

        reward = 0.0
        layer = 0 if net.routing == "recurrent" else self._depth
        if action != net.extra_action:
            history = net.selection_history
            if self.collaboration_reward:
                reward += (
                    self.collaboration_reward / net.max_depth * history.frequency(layer, action)
                )
            if self.train_modules:
                history.record(layer, action)
        self._path.append(action)
        stop = net.routing == "recurrent" and action == net.extra_action
        if not stop:
            self._h = net.step_sample(self._h, self._depth, action)
            self._depth += 1
        if stop or self._depth == net.max_depth:
            return self._finish(reward)
        info = {"action_mask": net.action_mask(self._depth).copy()}
        self._last_info = info
        return self._observation(self._h), reward, False, False, info

    def _check_action(self, action: Any) -> int:
        try:
            value = int(action)
        except (TypeError, ValueError):
            raise ValueError(f"action must be an integer, got {action!r}") from None
        if value != action or not 0 <= value < self.action_space.n:
            raise ValueError(
                f"action {action!r} is outside the action space Discrete({self.action_space.n})"
            )
        return value

    def _finish(self, reward: float) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        net = self.network
        index = self._index
        task = int(self._task[index])
        outputs = net.outputs_sample(self._h, task)
        loss, prediction, correct, label, final = judge_sample(
            net, outputs, self._y[index], self.reward_kind
        )
        if self.train_modules:
            padding = [-1] * (net.max_depth - len(self._path))
            route = torch.tensor([self._path + padding], dtype=torch.long, device=net.device)
            weights = None
            if self.squash_kappa:
                alpha = squash_weight(self._exploratory_count, len(self._path), self.squash_kappa)
                weights = torch.tensor([float(alpha)], device=net.device)
            net.add_routes(
                self._x[index : index + 1],
                self._task_tensor[index : index + 1],
                self._y_tensor[index : index + 1],
                route,
                weights=weights,
            )
        info = self._end_info(correct, loss, prediction, label, final, invalid=False)
        return self._observation(outputs), reward + final, True, False, info

    def _end_invalid(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self._path.append(action)
        label = self._y[self._index]
        if self.network.task_type == "classification":
            label = int(label)
        final = invalid_action_reward(self.reward_kind, self.invalid_action_loss)
        info = self._end_info(False, float("nan"), None, label, final, invalid=True)
        return self._observation(self._h), final, True, False, info

    def _end_info(
        self,
        correct: bool | None,
        loss: float,
        prediction: Any,
        label: Any,
        final: float,
        invalid: bool,
    ) -> dict[str, Any]:
        self._route_active = False
        self._ended = True
        info = {
            "action_mask": self.network.action_mask(self.network.max_depth).copy(),
            "correct": correct,
            "loss": loss,
            "prediction": prediction,
            "label": label,
            "task": int(self._task[self._index]),
            "path": tuple(self._path),
            "sample_index": self._index,
            "final_reward": final,
            "invalid_action": invalid,
        }
        self._last_info = info
        return info

    def _observation(self, h: np.ndarray) -> dict[str, Any]:
        activation = np.zeros(self.network.activation_dim, dtype=np.float32)
        activation[: h.shape[0]] = h
        return {
            "activation": activation,
            "task": int(self._task[self._index]),
            "depth": len(self._path) if self._ended else self._depth,
        }

    def mark_exploratory(self, explored: bool = True) -> None:
        """Tell the environment whether the action the next :meth:`step` receives was
        exploratory (``000`` 7.4.2: taken non-greedily).

        Call it between receiving an observation and stepping with the action chosen for it;
        ``step(action)`` keeps Gymnasium's signature. The mark applies to that one step (the
        default for an unmarked step is not exploratory). With ``squash_kappa > 0`` the
        marked decisions of a route scale its module update (eq. 7.4, see the class
        docstring); with ``squash_kappa = 0`` marks change nothing. Reach it through
        wrappers as ``env.unwrapped.mark_exploratory(...)``; :func:`agents.train` calls it
        for agents that implement ``exploratory``.
        """
        if not self._route_active:
            raise RuntimeError(
                "mark_exploratory() called with no route in progress: call it after reset() "
                "(or a non-final step) and before the step it describes"
            )
        self._next_exploratory = bool(explored)

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the allowed actions in the current state (for MaskablePPO)."""
        mask = self._last_info.get("action_mask")
        return (self.network.action_mask(0) if mask is None else mask).astype(bool)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: one line showing the current route."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        return describe_route(
            self.network,
            self._path,
            self._index,
            int(self._task[self._index]),
            self._last_info if self._ended else None,
        )


def squash_weight(exploratory: Any, length: Any, kappa: float) -> Any:
    """``000`` eq. 7.4: ``alpha_exp = (1 - exploratory / length) ** kappa``, the factor on a
    route's module learning rate given its count of exploratory decisions and its length
    (scalars or arrays)."""
    return (1.0 - np.asarray(exploratory, dtype=np.float64) / length) ** kappa


def judge_sample(
    network: RoutedNetwork, outputs: np.ndarray, label: Any, reward_kind: str
) -> tuple[float, Any, bool | None, Any, float]:
    """Loss, prediction, correctness (``None`` for regression), label (an ``int`` for
    classification) and final reward of one finished route's outputs."""
    loss = network.loss_sample(outputs, label)
    if network.task_type == "classification":
        prediction: Any = int(outputs.argmax())
        correct: bool | None = prediction == int(label)
        label = int(label)
    else:
        prediction = outputs.reshape(np.shape(label))
        correct = None
    return loss, prediction, correct, label, final_reward(reward_kind, bool(correct), loss)


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
    for depth, action in enumerate(path):
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
        elif final_info["correct"] is None:
            line += f" | loss {final_info['loss']:.4f}"
        else:
            verdict = "correct" if final_info["correct"] else "wrong"
            line += (
                f" | predicted {final_info['prediction']} label {final_info['label']} {verdict}"
            )
    return line
