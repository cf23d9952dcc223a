"""The routed network: a shared trunk, routed module layers, a readout and the module trainer.

A routing network (``001`` section 3, Algorithm 1; ``000`` section 3.1.1, Algorithm 3.1)
applies a sequence of modules chosen per sample. This class owns the trainable parts and the
module optimizer; it knows nothing about agents. Environments call it to

* embed a raw input through the trunk (:meth:`RoutedNetwork.embed`),
* apply the chosen modules at one depth to a batch, grouped by module
  (:meth:`RoutedNetwork.apply`),
* turn a finished route's activation into outputs (:meth:`RoutedNetwork.outputs`),
* hand over finished routes for training (:meth:`RoutedNetwork.add_routes`); the modules are
  updated once per ``module_batch_size`` finished routes, with gradients flowing only through
  the modules on each route (plus trunk and readout), ``001`` Algorithm 2 step 3.

Routing modes (DESIGN section 2):

* ``"layered"`` (``001`` "routing-all-fc"): depth ``d`` chooses among the modules of layer
  ``d``; the last layer emits the outputs (class logits). The extra action (index
  ``num_modules``) is PASS, the identity, allowed only where a layer's input and output sizes
  match (``001`` section 7.2).
* ``"recurrent"`` (``000`` section 5.3): one bank of ``hidden_dim -> hidden_dim`` modules reused
  at every depth; the extra action is stop (⊥); a route also ends after ``max_depth`` modules.
  A non-routed readout, shared or one per task, emits the outputs.

Routes are passed around as integer arrays of shape ``(batch, max_depth)``, padded with ``-1``
after the route's last action.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from routing_env.trunks import build_trunk

OptimizerFactory = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}

ROUTINGS = ("layered", "recurrent")


class RoutedNetwork(nn.Module):
    """Trunk, routed modules and readout of a routing network, with their optimizer.

    Args:
        input_shape: shape of one raw input (``(64,)`` for flat vectors, ``(1, 28, 28)`` for
            images).
        num_tasks: number of tasks; the per-task readout has one head per task.
        num_outputs: size of the output (classes per task, or regression outputs).
        task_type: ``"classification"`` (cross-entropy loss) or ``"regression"`` (mean
            squared error).
        routing: ``"layered"`` or ``"recurrent"`` (see the module docstring).
        num_modules: modules per routed layer (layered) or in the bank (recurrent).
        max_depth: routed layers (layered) or the longest route (recurrent).
        hidden_dim: size of the activations between routed modules.
        trunk: ``"none"``, ``"mlp"``, ``"conv"`` (SimpleConvNet, ``001`` section 4) or an
            ``nn.Module`` with an ``output_dim`` attribute. In recurrent mode a trunk whose
            output size differs from ``hidden_dim`` is followed by a non-routed
            ``Linear + ReLU`` projection to ``hidden_dim``.
        readout: ``"shared"`` or ``"per_task"`` (recurrent mode only; layered routes end in
            their last module).
        module_optimizer: ``"sgd"`` (default; ``000`` 7.4.4: adaptive optimizers destabilise
            routing), ``"adam"``, ``"rmsprop"``, ``"adagrad"``, or a callable
            ``(parameters, lr) -> torch.optim.Optimizer``.
        module_lr: learning rate of the module optimizer.
        module_batch_size: finished routes per module update.
        device: torch device of all parameters and computations.
        seed: seed of the parameter initialisation.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_tasks: int,
        num_outputs: int,
        *,
        task_type: str = "classification",
        routing: str = "layered",
        num_modules: int = 10,
        max_depth: int = 3,
        hidden_dim: int = 64,
        trunk: str | nn.Module = "none",
        readout: str = "shared",
        module_optimizer: str | OptimizerFactory = "sgd",
        module_lr: float = 0.1,
        module_batch_size: int = 16,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if routing not in ROUTINGS:
            raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")
        if task_type not in ("classification", "regression"):
            raise ValueError(f"unknown task_type {task_type!r}")
        if readout not in ("shared", "per_task"):
            raise ValueError(f"unknown readout {readout!r}; expected 'shared' or 'per_task'")
        for name, value in (
            ("num_tasks", num_tasks),
            ("num_outputs", num_outputs),
            ("num_modules", num_modules),
            ("max_depth", max_depth),
            ("hidden_dim", hidden_dim),
            ("module_batch_size", module_batch_size),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not module_lr > 0:
            raise ValueError(f"module_lr must be positive, got {module_lr!r}")

        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_tasks = int(num_tasks)
        self.num_outputs = int(num_outputs)
        self.task_type = task_type
        self.routing = routing
        self.num_modules = int(num_modules)
        self.max_depth = int(max_depth)
        self.hidden_dim = int(hidden_dim)
        self.readout_kind = readout
        self.module_lr = float(module_lr)
        self.module_batch_size = int(module_batch_size)
        self.device = torch.device(device)
        self._optimizer_spec = module_optimizer

        # Modules draw their default initialisation from the global RNG; fork it so that
        # building a network leaves the caller's torch stream untouched (reset_parameters
        # then draws the real values from `seed`).
        with torch.random.fork_rng(devices=[]):
            self.trunk = build_trunk(trunk, self.input_shape, self.hidden_dim)
            trunk_dim = self.trunk.output_dim
            if routing == "layered":
                self.in_dims = [trunk_dim] + [self.hidden_dim] * (self.max_depth - 1)
                self.out_dims = [self.hidden_dim] * (self.max_depth - 1) + [self.num_outputs]
                self.layers = nn.ModuleList(
                    nn.ModuleList(
                        _module(self.in_dims[d], self.out_dims[d], relu=d < self.max_depth - 1)
                        for _ in range(self.num_modules)
                    )
                    for d in range(self.max_depth)
                )
                self.projection: nn.Module | None = None
                self.readout: nn.Module | None = None
            else:
                self.projection = (
                    None if trunk_dim == self.hidden_dim else _module(trunk_dim, self.hidden_dim)
                )
                bank = nn.ModuleList(
                    _module(self.hidden_dim, self.hidden_dim) for _ in range(self.num_modules)
                )
                self.layers = nn.ModuleList([bank])
                self.in_dims = [self.hidden_dim] * self.max_depth
                self.out_dims = [self.hidden_dim] * self.max_depth
                heads = self.num_tasks if readout == "per_task" else 1
                self.readout = nn.ModuleList(
                    nn.Linear(self.hidden_dim, self.num_outputs) for _ in range(heads)
                )
        self.activation_dim = max([trunk_dim, self.hidden_dim, self.num_outputs])
        # Plain lists: indexing an nn.ModuleList costs more than the module call on one sample.
        self._module_lists = [list(layer) for layer in self.layers]
        self._views: list[list[tuple[np.ndarray, np.ndarray, bool]]] | None = None
        # Switching train/eval walks every submodule; only needed when a layer behaves
        # differently in the two modes.
        self._mode_sensitive = any(
            isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) for m in self.modules()
        )
        self.to(self.device)
        # Routing forward passes run in eval mode (batch norm on running statistics, one sample
        # at a time); `update` switches to train mode for the module step only.
        self.eval()

        self._action_masks = self._build_action_masks()
        self.reset_parameters(seed)

    # ------------------------------------------------------------------ structure

    @property
    def num_actions(self) -> int:
        """Size of the action space: one index per module plus PASS / stop (the last)."""
        return self.num_modules + 1

    @property
    def extra_action(self) -> int:
        """Index of PASS (layered) or stop ⊥ (recurrent)."""
        return self.num_modules

    def action_mask(self, depth: int) -> np.ndarray:
        """``int8`` mask of the actions allowed at ``depth`` (all zero once the route ended)."""
        return self._action_masks[depth]

    def _build_action_masks(self) -> np.ndarray:
        masks = np.zeros((self.max_depth + 1, self.num_actions), dtype=np.int8)
        masks[: self.max_depth, : self.num_modules] = 1
        for depth in range(self.max_depth):
            if self.routing == "recurrent" or self.in_dims[depth] == self.out_dims[depth]:
                masks[depth, self.extra_action] = 1
        masks.setflags(write=False)
        return masks

    def _layer(self, depth: int) -> list[nn.Module]:
        return self._module_lists[0 if self.routing == "recurrent" else depth]

    # ------------------------------------------------------------------ parameters

    def reset_parameters(self, seed: int) -> None:
        """Draw every parameter from ``seed`` and start the optimizer and route buffer afresh.

        Uses PyTorch's default initialisation scheme (uniform in ``±1/sqrt(fan_in)``) with a
        private generator, so the global torch RNG is neither used nor disturbed.
        """
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    bound = 1.0 / math.sqrt(module.weight[0].numel())
                    for tensor in (module.weight, module.bias):
                        if tensor is not None:
                            values = torch.empty(tensor.shape).uniform_(
                                -bound, bound, generator=generator
                            )
                            tensor.copy_(values)
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_parameters()
        self.optimizer = self._make_optimizer()
        self.num_updates = 0
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_count = 0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        spec = self._optimizer_spec
        params = list(self.parameters())
        if callable(spec):
            return spec(params, self.module_lr)
        if spec not in _OPTIMIZERS:
            raise ValueError(
                f"unknown module_optimizer {spec!r}; expected one of {sorted(_OPTIMIZERS)} "
                "or a callable (parameters, lr) -> torch.optim.Optimizer"
            )
        return _OPTIMIZERS[spec](params, lr=self.module_lr)

    # ------------------------------------------------------------------ forward pieces

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The first activation of a batch of raw inputs: trunk (and projection)."""
        h = self.trunk(x)
        if self.projection is not None:
            h = self.projection(h)
        return h

    def apply_one(self, h: torch.Tensor, depth: int, action: int) -> torch.Tensor:
        """Apply one action at ``depth`` to a batch that all took it (PASS / ⊥ is identity)."""
        if action == self.extra_action:
            return h
        return self._layer(depth)[action](h)

    def _drop_unrouted_gradients(self, routes: torch.Tensor) -> None:
        """Set to ``None`` the (zero) gradients of modules no route in the batch used.

        Optimizers skip parameters without a gradient, so momentum or adaptive state never
        moves a module that was not on a route (``001`` Algorithm 2 step 3).
        """
        if self.routing == "recurrent":
            per_layer = [routes.flatten()]
        else:
            per_layer = [routes[:, depth] for depth in range(routes.shape[1])]
        for layer, used in zip(self._module_lists, per_layer, strict=True):
            for index in _unused(len(layer), used):
                for parameter in layer[index].parameters():
                    parameter.grad = None

    # ------------------------------------------------------------------ one sample, NumPy

    def embed_sample(self, x: torch.Tensor) -> np.ndarray:
        """The first activation of one raw input (``x`` without batch axis) as a NumPy vector."""
        with torch.no_grad():
            return self.embed(x.unsqueeze(0))[0].cpu().numpy()

    def step_sample(self, h: np.ndarray, depth: int, action: int) -> np.ndarray:
        """One sample's activation after ``action`` at ``depth`` (identity for PASS / ⊥).

        The single-sample environment's hot path. On the CPU the module's weights are read
        through NumPy views of the parameters (they share memory, so optimizer steps are seen
        at once), which costs a fraction of a PyTorch module call for one vector.
        """
        if action == self.extra_action:
            return h
        layer = 0 if self.routing == "recurrent" else depth
        views = self._numpy_views()
        if views is None:
            with torch.no_grad():
                h_tensor = torch.from_numpy(h).to(self.device).unsqueeze(0)
                return self._module_lists[layer][action](h_tensor)[0].cpu().numpy()
        weight, bias, relu = views[layer][action]
        out = weight @ h
        out += bias
        if relu:
            np.maximum(out, 0.0, out=out)
        return out

    def outputs_sample(self, h: np.ndarray, task: int) -> np.ndarray:
        """Outputs of one finished route's activation (NumPy)."""
        if self.readout is None:
            return h
        head = self.readout[task if len(self.readout) > 1 else 0]
        if self.device.type != "cpu":
            with torch.no_grad():
                return head(torch.from_numpy(h).to(self.device).unsqueeze(0))[0].cpu().numpy()
        weight, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
        return weight @ h + bias

    def loss_sample(self, outputs: np.ndarray, y: Any) -> float:
        """Cross-entropy or squared error of one sample, as :meth:`per_sample_loss`."""
        if self.task_type == "classification":
            shifted = outputs.astype(np.float64) - outputs.max()
            return float(np.log(np.exp(shifted).sum()) - shifted[int(y)])
        target = np.asarray(y, dtype=np.float64).reshape(outputs.shape)
        return float(np.mean((outputs.astype(np.float64) - target) ** 2))

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> RoutedNetwork:
        # Moving or casting parameters replaces their storage: drop the NumPy views.
        self._views = None
        return super()._apply(fn, recurse)

    def _numpy_views(self) -> list[list[tuple[np.ndarray, np.ndarray, bool]]] | None:
        if self.device.type != "cpu":
            return None
        if self._views is None:
            self._views = [
                [_linear_view(module) for module in layer] for layer in self._module_lists
            ]
        return self._views

    def apply(self, h: torch.Tensor, depth: int, actions: torch.Tensor) -> torch.Tensor:
        """Apply each sample's chosen action at ``depth`` to a batch.

        ``actions`` holds module indices, the extra action (identity) or ``-1`` (route already
        ended: identity). The layer's module weights are stacked and each sample's are
        gathered for one batched matrix product, a few large kernels instead of one small
        kernel chain per chosen module. Only the chosen modules' parameters receive
        non-zero gradients; :meth:`update` drops the others' so no optimizer moves them.
        """
        layer = self._module_lists[0 if self.routing == "recurrent" else depth]
        is_module = (actions >= 0) & (actions != self.extra_action)
        if not bool(is_module.any()):
            return h
        linears = [module[0] if isinstance(module, nn.Sequential) else module for module in layer]
        weights = torch.stack([linear.weight for linear in linears])
        biases = torch.stack([linear.bias for linear in linears])
        index = torch.where(is_module, actions, torch.zeros_like(actions))
        out = torch.bmm(weights[index], h.unsqueeze(2)).squeeze(2) + biases[index]
        if isinstance(layer[0], nn.Sequential):
            out = torch.relu(out)
        if bool(is_module.all()):
            return out
        return torch.where(is_module.unsqueeze(1), out, h)

    def outputs(self, h: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Outputs (logits or regression values) of finished routes' activations."""
        if self.readout is None:
            return h
        if len(self.readout) == 1:
            return self.readout[0](h)
        out = h.new_empty((h.shape[0], self.num_outputs))
        for t in torch.unique(task).tolist():
            rows = (task == t).nonzero().squeeze(1)
            out[rows] = self.readout[t](h[rows])
        return out

    def forward(self, x: torch.Tensor, task: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
        """Outputs of whole routes: ``routes`` is ``(batch, max_depth)``, padded with ``-1``."""
        h = self.embed(x)
        for depth in range(routes.shape[1]):
            h = self.apply(h, depth, routes[:, depth])
        return self.outputs(h, task)

    def per_sample_loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (classification) or mean squared error (regression) per sample."""
        if self.task_type == "classification":
            return F.cross_entropy(outputs, y, reduction="none")
        target = y.reshape(outputs.shape)
        return ((outputs - target) ** 2).mean(dim=1)

    # ------------------------------------------------------------------ training

    @property
    def pending_routes(self) -> int:
        """Finished routes waiting for the next module update."""
        return self._pending_count

    def add_routes(
        self, x: torch.Tensor, task: torch.Tensor, y: torch.Tensor, routes: torch.Tensor
    ) -> int:
        """Queue finished routes for training; update once per ``module_batch_size`` routes.

        Routes are kept in arrival order and cut into consecutive batches of exactly
        ``module_batch_size``, so the same routes in the same order give the same parameters
        however they arrive (one at a time or many at once). Returns the number of updates
        made.
        """
        self._pending.append((x, task, y, routes))
        self._pending_count += x.shape[0]
        updates = 0
        if self._pending_count < self.module_batch_size:
            return updates
        columns = zip(*self._pending, strict=True)
        xs, tasks, ys, all_routes = (torch.cat(parts) for parts in columns)
        start = 0
        while self._pending_count - start >= self.module_batch_size:
            stop = start + self.module_batch_size
            self.update(xs[start:stop], tasks[start:stop], ys[start:stop], all_routes[start:stop])
            start = stop
            updates += 1
        self._pending = [(xs[start:], tasks[start:], ys[start:], all_routes[start:])]
        self._pending_count -= start
        return updates

    def update(
        self, x: torch.Tensor, task: torch.Tensor, y: torch.Tensor, routes: torch.Tensor
    ) -> float:
        """One optimizer step on the mean loss of the given routes; returns that loss.

        Raises ``FloatingPointError`` when the loss is not finite, before touching the
        parameters, so a diverged run stops with its last good parameters.
        """
        if self._mode_sensitive:
            self.train()
        try:
            outputs = self(x, task, routes)
        finally:
            if self._mode_sensitive:
                self.eval()
        loss = self.per_sample_loss(outputs, y).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"module loss is {loss.item()} at update {self.num_updates + 1}; "
                f"lower module_lr (now {self.module_lr}) or check the data for extreme values"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._drop_unrouted_gradients(routes)
        self.optimizer.step()
        self.num_updates += 1
        return float(loss.detach())


def _unused(count: int, used: torch.Tensor) -> list[int]:
    present = set(used.unique().tolist())
    return [index for index in range(count) if index not in present]


def _linear_view(module: nn.Module) -> tuple[np.ndarray, np.ndarray, bool]:
    linear = module[0] if isinstance(module, nn.Sequential) else module
    return (
        linear.weight.detach().numpy(),
        linear.bias.detach().numpy(),
        isinstance(module, nn.Sequential),
    )


def _module(in_dim: int, out_dim: int, relu: bool = True) -> nn.Module:
    if relu:
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())
    return nn.Linear(in_dim, out_dim)
