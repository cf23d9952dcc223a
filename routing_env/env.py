"""The routing MDP as a Gymnasium environment (DESIGN sections 2 and 3.1)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from routing_env.checkpoint import generator_state, restore_generator
from routing_env.datasets import MultiTaskDataset
from routing_env.mdp import (
    INVALID_ACTION_MODES,
    NETWORK_KEYWORDS,
    SAMPLE_ORDERS,
    RoutingMDP,
    SampleStream,
    describe_route,
    resolve_dataset,
    squash_weight,
)

__all__ = [
    "INVALID_ACTION_MODES",
    "NETWORK_KEYWORDS",
    "SAMPLE_ORDERS",
    "RoutingEnv",
    "describe_route",
    "resolve_dataset",
    "squash_weight",
]

_NAMES = ("",)


class RoutingEnv(RoutingMDP, gym.Env):
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

    By default ``Dict(activation=Box(-inf, inf, (activation_dim,), float32),
    task=Discrete(num_tasks), depth=Discrete(max_depth + 1))``. ``activation`` is the current
    activation (after the trunk, then after each applied module), zero-padded to
    ``activation_dim``, the largest activation size in the network; in the terminal observation
    it holds the route's output (logits). ``task`` is the sample's task id (0 in single-task
    data), ``depth`` the number of decisions made.

    Two options reshape it, for libraries whose default encoders take no ``Dict`` or that read
    the action mask from the observation:

    * ``flatten_observation=True``: one ``Box`` of shape
      ``(activation_dim + num_tasks + max_depth + 1,)`` float32, activation ⊕ one-hot(task) ⊕
      one-hot(depth); bounds ``(-inf, inf)`` on the activation, ``[0, 1]`` on the one-hots.
    * ``mask_in_observation=True``: the action mask joins the observation under
      ``"action_mask"``, as ``Box(0, 1, (num_actions,), int8)`` (PettingZoo's classic games'
      convention); with ``flatten_observation`` too, the observation is
      ``Dict(observation=Box, action_mask=Box)``. The terminal observation's mask marks every
      action: a masked sampler can draw from it, and no action taken on it has an effect.

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
    truncated. Stepping after the end raises.

    ## Info

    Every info, from :meth:`reset`, every step and the route's end, has the same keys with the
    same types (DESIGN 3.1, :mod:`routing_env.mdp`): ``action_mask``, ``route_done``,
    ``correct``, ``loss``, ``prediction``, ``label``, ``path`` (int64 ``(max_depth,)``, the
    actions so far padded with -1), ``sample_index``, ``final_reward`` (the final reward alone,
    without the last step's collaboration reward) and ``invalid_action``. Until
    ``route_done`` the end-of-route fields hold "not final" values (``loss=-1.0``,
    ``prediction=-1``, ``label=-1``, ``final_reward=0.0``); an invalid-action route ends with
    ``invalid_action=True``, ``loss=-1.0`` and ``prediction=-1`` (no prediction was made).
    Regression: ``correct`` is always ``False``, ``prediction`` and ``label`` are float32
    arrays. The task is in the observation, not in the info.

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
    * ``module_lr`` (default 0.3), ``module_optimizer`` (default ``"sgd"``; ``"adam"``,
      ``"rmsprop"``, ``"adagrad"`` or a callable), ``module_batch_size`` (finished routes per
      module update, default 16), ``module_lr_anneal_every`` (divide the module lr by 10 every
      this many routes, ``001`` section 4's annealing; default ``None``: constant). The defaults
      live in :mod:`routing_env.settings`, with the measurements that chose them.
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
    * ``flatten_observation``: one ``Box`` observation (see Observation Space).
    * ``mask_in_observation``: the action mask in the observation (see Observation Space).
    * ``render_mode``: ``None`` or ``"ansi"`` (a text line showing the route so far).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        dataset: str | os.PathLike | MultiTaskDataset = "digits-mtl",
        *,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        RoutingMDP.__init__(self, dataset, **kwargs)
        self.render_mode = render_mode
        self.action_space = self._route_action_space()
        self.observation_space = self._route_observation_space()

        net = self.network
        self._stream = SampleStream(np.arange(self.num_samples), self.sample_order == "shuffle")
        self._route_active = False
        self._ended = False
        self._h = np.zeros(0, dtype=np.float32)
        self._depth = 0
        self._path = np.full(net.max_depth, -1, dtype=np.int64)
        self._length = 0
        self._index = -1
        self._task_now = 0  # the task of sample _index
        self._num_actions = net.num_actions
        self._activation_dim = net.activation_dim
        self._last_info: dict[str, Any] = {}
        # Exploration marks (mark_exploratory): the next decision's, and the route's count.
        self._next_exploratory = False
        self._exploratory_count = 0

    # ------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed, [self._stream])
        if options and "sample_index" in options:
            index = self._check_sample_index(options["sample_index"])
        else:
            index = self._stream.take_one(self.np_random)
        self._index = index
        self._task_now = int(self._task[index])
        self._h = self.network.embed_sample(self._x[index])
        self._depth = 0
        self._path.fill(-1)
        self._length = 0
        self._next_exploratory = False
        self._exploratory_count = 0
        self._route_active = True
        self._ended = False
        mask = self._masks[0]
        self._last_info = self._route_info(mask, self._path, index)
        return self._observe(self._h, mask), dict(self._last_info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not self._route_active:
            if self._ended:
                raise RuntimeError(
                    "step() called after the route ended (terminated=True); call reset() first"
                )
            raise RuntimeError("step() called before reset()")
        if type(action) is int and 0 <= action < self._num_actions:
            pass  # the common case, checked without arrays
        else:
            action = int(self._check_actions((action,), _NAMES)[0])
        self._exploratory_count += self._next_exploratory
        self._next_exploratory = False
        net = self.network
        depth = self._depth
        if not self._allowed[depth, action]:
            actions = np.array([action])
            self._refuse_masked(np.zeros(1, dtype=bool), np.array([depth]), actions, _NAMES)
            self._path[self._length] = action
            self._length += 1
            return self._end(reward=0.0, outputs=None)

        reward = self._collaboration_reward(action, depth)
        self._path[self._length] = action
        self._length += 1
        stop = self._recurrent and action == self._extra
        if not stop:
            self._h = net.step_sample(self._h, depth, action)
            self._depth += 1
        if stop or self._depth == net.max_depth:
            return self._end(reward, net.outputs_sample(self._h, self._task_now))
        mask = self._masks[self._depth]
        self._last_info = self._route_info(mask, self._path, self._index)
        return self._observe(self._h, mask), reward, False, False, dict(self._last_info)

    def _end(
        self, reward: float, outputs: np.ndarray | None
    ) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """End the route: judged on ``outputs``, or ended by a masked action (``None``)."""
        columns = self._end_routes(
            np.array([self._index]),
            self._path[None],
            np.array([self._length]),
            np.zeros((0, 0), dtype=np.float32) if outputs is None else outputs[None],
            judged=None if outputs is not None else np.zeros(1, dtype=bool),
            exploratory=np.array([self._exploratory_count]) if self.squash_kappa else None,
        )
        self._route_active = False
        self._ended = True
        self._last_info = self._info_row(columns, 0)
        final = self._last_info["final_reward"]
        h = self._h if outputs is None else outputs
        observation = self._observe(h, self._terminal_mask, depth=self._length)
        return observation, reward + final, True, False, dict(self._last_info)

    def _observe(self, h: np.ndarray, mask: np.ndarray, depth: int | None = None) -> Any:
        activation = np.zeros(self._activation_dim, dtype=np.float32)
        activation[: h.shape[0]] = h
        return self._observation(
            activation,
            self._task_now,
            self._depth if depth is None else depth,
            mask.copy() if self.mask_in_observation else None,
        )

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything this env adds to its network's state to continue exactly: the sample
        stream, its random state and the route in flight (plain values and arrays; see
        :mod:`routing_env.checkpoint`)."""
        route = None
        if self._route_active:
            route = {
                "index": self._index,
                "h": self._h.copy(),
                "depth": self._depth,
                "path": self._path.copy(),
                "length": self._length,
                "exploratory": self._exploratory_count,
                "next_exploratory": self._next_exploratory,
                "info": self._last_info,
            }
        return {
            "stream": self._stream.state_dict(),
            "rng": generator_state(self.np_random),
            "route": route,
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`checkpoint_state` (the network is restored separately)."""
        self._stream.load_state_dict(state["stream"])
        restore_generator(self.np_random, state["rng"])
        route = state["route"]
        self._route_active = route is not None
        self._ended = False
        if route is not None:
            self._index = int(route["index"])
            self._task_now = int(self._task[self._index])
            self._h = np.asarray(route["h"], dtype=np.float32)
            self._depth = int(route["depth"])
            self._path = np.asarray(route["path"], dtype=np.int64).copy()
            self._length = int(route["length"])
            self._exploratory_count = int(route["exploratory"])
            self._next_exploratory = bool(route["next_exploratory"])
            self._last_info = dict(route["info"])

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
        return (self._masks[0] if mask is None else mask).astype(bool)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: one line showing the current route."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        return describe_route(
            self.network,
            self._path[: self._length].tolist(),
            self._index,
            int(self._task[self._index]),
            self._last_info if self._ended else None,
        )
