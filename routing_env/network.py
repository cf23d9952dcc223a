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
  the modules on each route (plus trunk and readout), ``001`` Algorithm 2 step 3. A batch
  routed with a :class:`RouteGraph` (:meth:`RoutedNetwork.record_routes`) keeps what its
  routing forward pass computed, and the update that trains on exactly that batch starts
  from it instead of computing the pass again (same numbers).

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

Grouped computation. The weights of each routed layer (and of per-task readout heads) live in
one stacked tensor, transposed to ``(num_modules, in, out)``; every module's ``weight`` and
``bias`` parameters are views of it, so optimizer steps and ``load_state_dict`` write through
and the stack is never copied. A layer whose input and output sizes match has one more slot,
the identity, which PASS, stop and ended routes (``-1``) go through: its chunks come last and
pass unchanged, without a product (``x @ I + 0`` is ``x``) and without ReLU. A batch is applied
in one batched matrix product: rows are grouped by module, each group is cut into chunks (one
per group, as long as the largest group's size, while that at most doubles the rows; otherwise
of the mean group size), the chunks are padded to that size, multiplied by their module's
weights in one ``baddbmm``, and gathered back into batch order. The work thus stays within a
small factor of the unrouted product however the routes are spread, and the number of kernels
does not grow with the number of modules. Whole routes (:meth:`forward`, module training) stay
in padded order from one depth to the next: one gather per depth.

Module update by hand. In the default case (layered routing, this network's plain SGD, nothing
trained outside the routed layers, no batch norm or dropout) the update computes the routes
without autograd, keeping each depth's products (``_Product``: the weights read, the padded
inputs, the ReLU outputs, the gather), and writes the backward pass out
(:meth:`RoutedNetwork._step_by_hand`): the loss gradient, then depth by depth from the last
the ReLU mask, the input gradient, and the step on the stacked weights fused into the batched
product that computes the weight gradient (``baddbmm_`` with ``alpha = -lr``, or an
``index_add_`` when the chunks are not a prefix of the stack). On batches of a few hundred
routes, recording an autograd graph and running its engine cost more than the products.
Elsewhere the update runs autograd on detached leaves of the stacks.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import optimizer as optimizer_module
from torch.utils.hooks import RemovableHandle

from routing_env.trunks import IdentityTrunk, build_trunk

OptimizerFactory = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}

ROUTINGS = ("layered", "recurrent")
_LAYOUT_CACHE = 16  # groupings kept by RoutedNetwork._layout


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
        self._identity_embedding = isinstance(self.trunk, IdentityTrunk) and self.projection is None
        # Plain lists: indexing an nn.ModuleList costs more than the module call on one sample.
        self._module_lists = [list(layer) for layer in self.layers]
        self._views: list[list[tuple[np.ndarray, np.ndarray, bool]]] | None = None
        # Banks of same-shaped linears computed together: one per routed layer, plus the
        # per-task readout heads. `_stacks[i]` holds bank i's stacked weight and bias, which its
        # linears' parameters are views of (see the module docstring).
        self._banks: list[list[nn.Linear]] = [
            [_linear_of(module) for module in layer] for layer in self._module_lists
        ]
        self._bank_relu = [isinstance(layer[0], nn.Sequential) for layer in self._module_lists]
        self._bank_identity = [
            self.routing == "recurrent" or self.in_dims[depth] == self.out_dims[depth]
            for depth in range(len(self._module_lists))
        ]
        self._readout_bank: int | None = None
        if self.readout is not None and len(self.readout) > 1:
            self._readout_bank = len(self._banks)
            self._banks.append(list(self.readout))
            self._bank_relu.append(False)
            self._bank_identity.append(False)
        self._stacks: list[tuple[torch.Tensor, torch.Tensor, list[int]] | None] = [
            None for _ in self._banks
        ]
        in_banks = {id(p) for linears in self._banks for m in linears for p in m.parameters()}
        self._outside_banks = [p for p in self.parameters() if id(p) not in in_banks]
        # Set during `update`: (stacked weight, stacked bias, bank, chunk members or None,
        # weight leaf, bias leaf) of every batched product; the leaves collect the gradients.
        self._leaves: list[tuple[Any, ...]] | None = None
        # Set while a chain is computed for the update by hand (`_step_by_hand`): the
        # `_Product` of every depth, in order.
        self._tape: list[_Product] | None = None
        self._layouts: dict[tuple[int, bytes], _GroupLayout] = {}
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
        # An OrderedDict, as nn.Module keeps its hooks: RemovableHandle refers to it weakly.
        self._update_hooks: OrderedDict[int, Callable[[RoutedNetwork], None]] = OrderedDict()
        self.reset_parameters(seed)
        for bank in range(len(self._banks)):
            self._bind(bank)

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
                    draw_default_init(module, generator)
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_parameters()
        self.optimizer = self._make_optimizer()
        self.num_updates = 0
        # Queued routes: (x, task, y, routes, weights or None) per add_routes call.
        self._pending: list[tuple[Any, ...]] = []
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

    def _drop_unrouted_gradients(self, routes: torch.Tensor | np.ndarray) -> None:
        """Set to ``None`` the (zero) gradients of modules no route in the batch used.

        Optimizers skip parameters without a gradient, so momentum or adaptive state never
        moves a module that was not on a route (``001`` Algorithm 2 step 3). :meth:`update`
        never gives such modules a gradient in the first place; this serves callers that run
        their own backward pass through :meth:`forward`.
        """
        routes = _host_indices(routes)
        for bank, linears in enumerate(self._banks[: len(self._module_lists)]):
            used = set(self._bank_used(bank, routes, None).tolist())
            for index, linear in enumerate(linears):
                if index not in used:
                    for parameter in linear.parameters():
                        parameter.grad = None

    # ------------------------------------------------------------------ one sample, NumPy

    def embed_sample(self, x: torch.Tensor) -> np.ndarray:
        """The first activation of one raw input (``x`` without batch axis) as a NumPy vector."""
        if self._identity_embedding and x.device.type == "cpu":
            return x.detach().numpy().reshape(-1)  # what the identity trunk's flatten gives
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
        return float(self.losses_numpy(outputs[None], np.asarray(y)[None])[0])

    def losses_numpy(self, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per-row cross-entropy or mean squared error of ``(batch, outputs)`` in float64."""
        values = outputs.astype(np.float64)
        if self.task_type == "classification":
            shifted = values - values.max(axis=1, keepdims=True)
            log_total = np.log(np.exp(shifted).sum(axis=1))
            return log_total - shifted[np.arange(len(labels)), labels.astype(np.int64)]
        target = labels.astype(np.float64).reshape(values.shape)
        return ((values - target) ** 2).mean(axis=1)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> RoutedNetwork:
        # Moving or casting parameters replaces their storage: drop the NumPy views and
        # re-stack the banks on first use.
        self._views = None
        result = super()._apply(fn, recurse)
        if hasattr(self, "_stacks"):
            self._stacks = [None for _ in self._stacks]
        return result

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A copy (deepcopy, pickle) gets parameters with storage of their own: re-stack.
        super().__setstate__(state)
        self._views = None
        if "_stacks" in state:
            self._stacks = [None for _ in self._stacks]

    def _numpy_views(self) -> list[list[tuple[np.ndarray, np.ndarray, bool]]] | None:
        if self.device.type != "cpu":
            return None
        if self._views is None:
            self._views = [
                [_linear_view(module) for module in layer] for layer in self._module_lists
            ]
        return self._views

    # ------------------------------------------------------------------ stacked banks

    def _bind(self, bank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack bank ``bank``'s current parameters and make them views of the stack.

        The stack holds the weights transposed, ``(n, in, out)`` and contiguous, the layout
        a batched product reads fastest; each ``weight`` parameter is a transposed view. A
        square bank (a routed layer whose input and output sizes match) has one more slot
        after its modules, the identity (weight ``I``, bias ``0``), which PASS, stop and the
        rows of ended routes go through: ``x @ I + 0`` is ``x`` exactly, and the ReLU is
        not applied to that slot.
        """
        linears = self._banks[bank]
        with torch.no_grad():
            weights = [linear.weight.detach().t() for linear in linears]
            biases = [linear.bias.detach() for linear in linears]
            if self._bank_identity[bank]:
                weights.append(torch.eye(weights[0].shape[0]).to(weights[0]))
                biases.append(torch.zeros_like(biases[0]))
            weight, bias = torch.stack(weights), torch.stack(biases)
            for index, linear in enumerate(linears):
                linear.weight.data = weight[index].t()
                linear.bias.data = bias[index]
        self._stacks[bank] = (weight, bias, _data_pointers(linears))
        self._views = None
        return weight, bias

    def _stacked(self, bank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bank ``bank``'s stacked weight ``(n, in, out)`` and bias ``(n, out)``.

        The parameters are the truth: if any was given new storage (a parameter replaced,
        ``load_state_dict(assign=True)``, a copy), the bank is stacked again from them.
        """
        stack = self._stacks[bank]
        if stack is None or _data_pointers(self._banks[bank]) != stack[2]:
            return self._bind(bank)
        return stack[0], stack[1]

    def _bank_used(
        self, bank: int, routes: np.ndarray | None, task: np.ndarray | None
    ) -> np.ndarray:
        """Members of ``bank`` that some row of the batch goes through."""
        if bank == self._readout_bank:
            values = task
        elif self.routing == "recurrent":
            values = routes.ravel()
        else:
            values = routes[:, bank]
        count = len(self._banks[bank])
        values = values[(values >= 0) & (values < count)]
        return np.flatnonzero(np.bincount(values, minlength=count))

    def _groups(self, bank: int, actions: np.ndarray) -> np.ndarray | None:
        """Each row's member of ``bank`` (the identity slot for PASS, stop and ``-1``), or
        ``None`` if a row has no member there (PASS or ``-1`` at a non-square layer)."""
        count = len(self._banks[bank])
        low, high = actions.min(), actions.max()
        if low >= 0 and high < count:
            return actions
        if not self._bank_identity[bank] or high > count:
            return None
        return actions if low >= 0 else np.where(actions < 0, count, actions)

    def _layout(self, groups: np.ndarray, count: int) -> _GroupLayout:
        """The grouping of ``groups``, from a small cache: :meth:`update` meets again the
        layouts that routing the same batch computed (same actions, same order)."""
        key = (count, groups.tobytes())
        cache = self._layouts
        layout = cache.get(key)
        if layout is None:
            layout = _GroupLayout(groups, count)
            if len(cache) >= _LAYOUT_CACHE:
                del cache[next(iter(cache))]
            cache[key] = layout
        return layout

    def _bank_weights(
        self, bank: int, layout: _GroupLayout, device: torch.device, chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(chunks, in, out)`` and bias ``(chunks, out)`` of the first ``chunks``
        chunks of ``layout`` in ``bank`` (the modules' chunks: the identity slot's come last
        and are not multiplied, see :meth:`_bank_product`).

        Three sources: inside :meth:`update`, leaves (the stack itself or the chunks' rows of
        it, detached) whose gradients :meth:`update` applies; with autograd on, the used
        members' parameters stacked, so gradients reach exactly those parameters; otherwise
        the stack itself, no copy.
        """
        if self._leaves is None and torch.is_grad_enabled():
            linears = self._banks[bank]
            members = [member for member in layout.used.tolist() if member < len(linears)]
            weight = torch.stack([linears[member].weight.t() for member in members])
            bias = torch.stack([linears[member].bias for member in members])
            if not layout.one_chunk_per_group:
                index = layout.tensor("chunk_local", device)[:chunks]
                weight, bias = weight.index_select(0, index), bias.index_select(0, index)
            return weight, bias
        stack_weight, stack_bias, index, weight, bias = self._chunk_weights(
            bank, layout, device, chunks
        )
        if self._leaves is not None:
            weight = weight.detach().requires_grad_(True)
            bias = bias.detach().requires_grad_(True)
            self._leaves.append((stack_weight, stack_bias, bank, index, weight, bias))
        return weight, bias

    def _chunk_weights(
        self, bank: int, layout: _GroupLayout, device: torch.device, chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Bank ``bank``'s stacked weight and bias, the stack rows of the first ``chunks``
        chunks of ``layout`` (``None`` when they are a prefix of the stack) and those chunks'
        weight and bias, read from the stack (views for a prefix)."""
        stack_weight, stack_bias = weight, bias = self._stacked(bank)
        index = None
        if layout.single:
            member = int(layout.used[0])
            weight, bias = weight[member : member + 1], bias[member : member + 1]
            index = layout.tensor("chunk_groups", device)
        elif layout.one_chunk_per_group and layout.used[chunks - 1] == chunks - 1:
            # Members 0..chunks-1, one chunk each: a prefix of the stack, no copy.
            weight, bias = weight[:chunks], bias[:chunks]
        else:
            index = layout.tensor("chunk_groups", device)[:chunks]
            weight, bias = weight.index_select(0, index), bias.index_select(0, index)
        return stack_weight, stack_bias, index, weight, bias

    def _bank_linear(self, bank: int, h: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
        """Row ``i`` of ``h`` through member ``groups[i]`` of ``bank`` (and its ReLU), in one
        batched product."""
        layout = self._layout(groups, self._bank_size(bank))
        if layout.single:
            if self._module_slots(bank, layout) == 0:  # every row takes the identity
                return h
            weight, bias = self._bank_weights(bank, layout, h.device, 1)
            out = torch.addmm(bias[0], h, weight[0])
            return torch.relu(out) if self._bank_relu[bank] else out
        out = self._bank_product(bank, h, layout.tensor("sources", h.device), layout)
        return out.index_select(0, layout.tensor("slots", h.device))

    def _bank_size(self, bank: int) -> int:
        return len(self._banks[bank]) + int(self._bank_identity[bank])

    def _module_slots(self, bank: int, layout: _GroupLayout) -> int:
        """Padded slots of ``layout`` that go through modules: all but the identity slot's,
        which come last."""
        start = layout.first_slot_of(len(self._banks[bank])) if self._bank_identity[bank] else None
        return len(layout.sources) if start is None else start

    def _bank_product(
        self, bank: int, source: torch.Tensor, index: torch.Tensor, layout: _GroupLayout
    ) -> torch.Tensor:
        """The padded batch of ``layout`` (slot ``j`` holds row ``index[j]`` of ``source``)
        through its chunks' modules (and ReLU). The identity slot's rows, the last ones, pass
        unchanged (what ``x @ I + 0`` gives, without the product, and no ReLU); with autograd
        on they are gathered apart, so that no slice of the padded batch enters the autograd
        graph, and without it written into the same buffer as the products.

        While :meth:`update` computes a chain by hand, the depth's ``_Product`` is recorded.
        """
        start = self._module_slots(bank, layout)
        tape = self._tape
        relu = self._bank_relu[bank]
        chunk_index = weight = modules = out = None
        if start == 0:
            padded = source.index_select(0, index)
            if tape is not None:
                stack_weight, stack_bias = self._stacked(bank)
        else:
            whole = start == index.shape[0]
            modules = source.index_select(0, index if whole else index[:start])
            chunks = start // layout.chunk_size
            if tape is None:
                weight, bias = self._bank_weights(bank, layout, source.device, chunks)
            else:
                stack_weight, stack_bias, chunk_index, weight, bias = self._chunk_weights(
                    bank, layout, source.device, chunks
                )
            modules = modules.view(chunks, layout.chunk_size, modules.shape[1])
            if whole or torch.is_grad_enabled():
                out = torch.baddbmm(bias.unsqueeze(1), modules, weight).view(start, -1)
                if relu:
                    out = torch.relu(out)
                padded = out if whole else torch.cat((out, source.index_select(0, index[start:])))
            else:
                padded = modules.new_empty((index.shape[0], weight.shape[2]))
                out = padded[:start]
                torch.baddbmm(
                    bias.unsqueeze(1), modules, weight, out=out.view(chunks, -1, out.shape[1])
                )
                if relu:
                    out.relu_()
                torch.index_select(source, 0, index[start:], out=padded[start:])
        if tape is not None:
            tape.append(
                _Product(
                    stack_weight=stack_weight,
                    stack_bias=stack_bias,
                    bank=bank,
                    index=chunk_index,
                    weight=weight,
                    inputs=modules,
                    activations=out if relu else None,
                    sources=index,
                    start=start,
                    source_shape=source.shape if tape else None,
                )
            )
        return padded

    def _chain(self, h: torch.Tensor, groups: list[np.ndarray]) -> torch.Tensor:
        """Whole routes, ``groups[d]`` the member of each row at depth ``d``, kept in padded
        order between depths: one gather per depth moves each row from its slot in one
        depth's padded batch to its slot in the next (module docstring)."""
        h, layout = self._chain_padded(h, groups)
        return h.index_select(0, layout.tensor("slots", h.device))

    def _chain_padded(
        self, h: torch.Tensor, groups: list[np.ndarray]
    ) -> tuple[torch.Tensor, _GroupLayout]:
        """:meth:`_chain` up to the last depth's padded batch, and that depth's layout."""
        device = h.device
        previous: _GroupLayout | None = None
        for depth, members in enumerate(groups):
            bank = 0 if self.routing == "recurrent" else depth
            layout = self._layout(members, self._bank_size(bank))
            if previous is None:
                sources = layout.tensor("sources", device)
            else:
                sources = torch.from_numpy(previous.slots[layout.sources]).to(device)
            h = self._bank_product(bank, h, sources, layout)
            previous = layout
        return h, previous

    def apply(
        self,
        h: torch.Tensor,
        depth: int,
        actions: torch.Tensor | np.ndarray,
        graph: RouteGraph | None = None,
    ) -> torch.Tensor:
        """Apply each sample's chosen action at ``depth`` to a batch.

        ``actions`` (a tensor or a NumPy array) holds module indices, the extra action
        (identity) or ``-1`` (route already ended: identity). The rows are grouped by module
        and computed in one batched product (module docstring). Only the chosen modules'
        parameters take part in the computation, so only they receive gradients.

        ``graph`` (from :meth:`record_routes`) computes this depth with autograd on, whatever
        the caller's grad mode, and keeps its graph for the module update (:class:`RouteGraph`).
        """
        bank = 0 if self.routing == "recurrent" else depth
        actions = _host_indices(actions)
        if len(actions) == 0:
            return h
        groups = self._groups(bank, actions)
        if graph is not None:
            if groups is not None and graph.expects(depth, h):
                return self._apply_recorded(graph, bank, h, groups, actions)
            graph.discard()
        if groups is not None:
            return self._bank_linear(bank, h, groups)
        # PASS or -1 at a layer whose sizes differ: only possible if no row changes size.
        chosen = np.flatnonzero((actions >= 0) & (actions != self.extra_action))
        if chosen.size == 0:
            return h
        rows = torch.from_numpy(chosen).to(h.device)
        out = self._bank_linear(bank, h.index_select(0, rows), actions[chosen])
        if out.shape[1] != h.shape[1]:
            raise ValueError(
                f"depth {depth} changes the activation size ({h.shape[1]} -> {out.shape[1]}), "
                "so every sample must take a module there (no PASS, no -1)"
            )
        return h.index_copy(0, rows, out)

    def _apply_recorded(
        self,
        graph: RouteGraph,
        bank: int,
        h: torch.Tensor,
        groups: np.ndarray,
        actions: np.ndarray,
    ) -> torch.Tensor:
        """One depth of a recorded batch, computed as :meth:`_chain` computes it inside
        :meth:`update` (the rows kept in padded order from one depth to the next; with
        ``graph.by_hand`` the products kept for :meth:`_step_by_hand`, else with autograd on,
        same leaves); the version of every stacked weight read is noted
        (:meth:`_graph_current` checks them). Returns the rows in batch order, without graph."""
        layout = self._layout(groups, self._bank_size(bank))
        device = h.device
        first = len(graph.leaves)
        record = "_tape" if graph.by_hand else "_leaves"
        self.__dict__[record] = graph.leaves
        try:
            with torch.set_grad_enabled(not graph.by_hand):
                if graph.layout is None:
                    out = self._bank_product(bank, h, layout.tensor("sources", device), layout)
                else:
                    moves = torch.from_numpy(graph.layout.slots[layout.sources]).to(device)
                    out = self._bank_product(bank, graph.padded, moves, layout)
        finally:
            self.__dict__[record] = None
        for stack_weight, stack_bias, *_ in graph.leaves[first:]:
            graph.stamps.append((stack_weight._version, stack_bias._version))
        graph.actions.append(actions)
        graph.padded, graph.layout = out, layout
        return out.detach().index_select(0, layout.tensor("slots", device))

    def record_routes(self, x: torch.Tensor) -> RouteGraph | None:
        """A :class:`RouteGraph` to route the batch of raw inputs ``x`` with (the caller applies
        the first depth to ``embed(x)``), or ``None`` where reuse is not supported.

        Supported: layered routing with nothing trained outside the routed layers and no layer
        that behaves differently in training (batch norm, dropout): there the routing forward
        pass is exactly the computation :meth:`update` would repeat.
        """
        if self.routing != "layered" or self._mode_sensitive or self._trained_outside_banks():
            return None
        return RouteGraph(x, by_hand=self._by_hand_lr() is not None)

    def outputs(self, h: torch.Tensor, task: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Outputs (logits or regression values) of finished routes' activations."""
        if self.readout is None:
            return h
        if self._readout_bank is None:
            return self.readout[0](h)
        return self._bank_linear(self._readout_bank, h, _host_indices(task))

    def forward(self, x: torch.Tensor, task: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
        """Outputs of whole routes: ``routes`` is ``(batch, max_depth)``, padded with ``-1``."""
        routes = _host_indices(routes)
        h = self.embed(x)
        groups = self._route_groups(routes)
        if groups is not None:
            h = self._chain(h, groups)
        else:
            for depth in range(routes.shape[1]):
                h = self.apply(h, depth, routes[:, depth])
        return self.outputs(h, task)

    def _route_groups(self, routes: np.ndarray) -> list[np.ndarray] | None:
        """Each depth's bank members of whole routes, or ``None`` when :meth:`_chain` cannot
        compute them (no routes, or PASS / ``-1`` at a layer whose sizes differ)."""
        groups = [
            self._groups(0 if self.routing == "recurrent" else depth, routes[:, depth])
            for depth in range(routes.shape[1])
        ]
        if len(routes) and all(members is not None for members in groups):
            return groups
        return None

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
        self,
        x: torch.Tensor,
        task: torch.Tensor,
        y: torch.Tensor,
        routes: torch.Tensor,
        graph: RouteGraph | None = None,
        weights: torch.Tensor | None = None,
    ) -> int:
        """Queue finished routes for training; update once per ``module_batch_size`` routes.

        Routes are kept in arrival order and cut into consecutive batches of exactly
        ``module_batch_size``, so the same routes in the same order give the same parameters
        however they arrive (one at a time or many at once). Returns the number of updates
        made.

        ``graph``: the :class:`RouteGraph` these routes were computed with (row ``i`` of the
        graph is route ``i`` here). When ``x`` is the graph's own input tensor, the routes are
        exactly the next module batch and the graph is still current, the update takes its
        loss from the graph's outputs instead of computing the forward pass again; the result
        is the same.

        ``weights``: one factor per route on its loss in the update (see :meth:`update`), e.g.
        the exploration squashing of ``000`` eq. 7.4; ``None`` weighs every route 1.
        """
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
            if weights.shape != (x.shape[0],):
                raise ValueError(
                    f"weights must hold one value per route, shape ({x.shape[0]},); "
                    f"got shape {tuple(weights.shape)}"
                )
            if not bool(((weights >= 0) & torch.isfinite(weights)).all()):
                raise ValueError(f"route weights must be finite and >= 0, got {weights.tolist()}")
        if graph is not None and self._pending_count == 0 and x.shape[0] == self.module_batch_size:
            routes_host = _host_indices(routes)
            if self._graph_current(graph, x, routes_host):
                self._update_from(graph, task, y, routes_host, weights)
            else:
                graph.discard()
                self.update(x, task, y, routes_host, weights)
            return 1
        self._pending.append((x, task, y, routes, weights))
        self._pending_count += x.shape[0]
        updates = 0
        if self._pending_count < self.module_batch_size:
            return updates
        if len(self._pending) == 1:
            xs, tasks, ys, all_routes, all_weights = self._pending[0]
        else:
            columns = zip(*(queued[:4] for queued in self._pending), strict=True)
            xs, tasks, ys, all_routes = (torch.cat(parts) for parts in columns)
            all_weights = self._joined_pending_weights()
        start = 0
        while self._pending_count - start >= self.module_batch_size:
            stop = start + self.module_batch_size
            self.update(
                xs[start:stop],
                tasks[start:stop],
                ys[start:stop],
                all_routes[start:stop],
                None if all_weights is None else all_weights[start:stop],
            )
            start = stop
            updates += 1
        if start == self._pending_count:
            self._pending = []
        else:
            rest = None if all_weights is None else all_weights[start:]
            self._pending = [(xs[start:], tasks[start:], ys[start:], all_routes[start:], rest)]
        self._pending_count -= start
        return updates

    def _joined_pending_weights(self) -> torch.Tensor | None:
        """The queued routes' weights in one tensor (1 for routes queued without), or
        ``None`` when no queued route has a weight, so unweighted training stays bit for bit
        what it was."""
        if all(queued[4] is None for queued in self._pending):
            return None
        return torch.cat(
            [
                torch.ones(len(x), device=self.device) if weights is None else weights
                for x, *_, weights in self._pending
            ]
        )

    def update(
        self,
        x: torch.Tensor,
        task: torch.Tensor,
        y: torch.Tensor,
        routes: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> float:
        """One optimizer step on the mean loss of the given routes; returns that loss.

        Gradients reach only the modules on the routes (plus trunk and readout): the others
        keep ``grad = None``, so no optimizer state moves them (``001`` Algorithm 2 step 3).
        With the default plain SGD (no momentum, no weight decay) the modules' step
        ``p -= lr * grad`` is taken on each layer's stacked weights at once, which is the same
        arithmetic (an unrouted module's gradient is exactly zero there); the modules'
        parameters then never hold a ``grad``, and the optimizer object is called only for
        parameters outside the routed layers (trunk, projection, shared readout), if any. In
        layered routing with nothing trained outside the routed layers, the backward pass is
        also written out (:meth:`_step_by_hand`, module docstring).

        ``weights`` (one ``>= 0`` per route) turn the loss into ``mean(weights * losses)``.
        Under plain SGD this is exactly each route's own learning rate scaled by its weight,
        the exploration squashing ``alpha_exp`` of ``000`` eq. 7.4. Adaptive optimizers
        (Adam, RMSprop, Adagrad) normalise the gradient's scale away, so for them a weight
        only shifts the balance between the routes of one batch, not the step size; a module
        that only routes of weight 0 went through gets no gradient at all, so even their
        momentum does not move it.

        Raises ``FloatingPointError`` when the loss is not finite, before touching the
        parameters, so a diverged run stops with its last good parameters.
        """
        routes_host = _host_indices(routes)
        lr = self._by_hand_lr()
        groups = None if lr is None else self._route_groups(routes_host)
        if groups is not None:
            tape: list[_Product] = []
            self.__dict__["_tape"] = tape
            try:
                with torch.no_grad():
                    padded, layout = self._chain_padded(self.embed(x), groups)
            finally:
                self.__dict__["_tape"] = None
            return self._step_by_hand(padded, layout, y, tape, lr, weights)
        if self._mode_sensitive:
            self.train()
        self.__dict__["_leaves"] = []  # plain attribute: nn.Module.__setattr__ is slow
        try:
            # Callers may route under no_grad (the vector env does); the update needs autograd.
            with torch.enable_grad():
                outputs = self(x, task, routes_host)
                loss = _weighted_mean(self.per_sample_loss(outputs, y), weights)
        finally:
            leaves = self._leaves
            self.__dict__["_leaves"] = None
            if self._mode_sensitive:
                self.eval()
        return self._step(loss, leaves, *_trained_rows(routes_host, task, weights))

    def _graph_current(self, graph: RouteGraph, x: torch.Tensor, routes: np.ndarray) -> bool:
        """Whether ``graph`` computed exactly these routes on these inputs with the parameters
        as they are now: every route complete, no stacked weight it read changed or re-stacked
        since (an update, an optimizer step, ``load_state_dict`` all bump the version)."""
        if x is not graph.inputs or graph.padded is None or len(graph.actions) != routes.shape[1]:
            return False
        if self._mode_sensitive or self._trained_outside_banks():
            return False
        if graph.by_hand != (self._by_hand_lr() is not None):
            return False
        for (stack_weight, stack_bias, bank, *_), stamp in zip(
            graph.leaves, graph.stamps, strict=True
        ):
            current = self._stacks[bank]
            if (
                current is None
                or current[0] is not stack_weight
                or (stack_weight._version, stack_bias._version) != stamp
                or _data_pointers(self._banks[bank]) != current[2]
            ):
                return False
        return all(
            np.array_equal(actions, routes[:, depth]) for depth, actions in enumerate(graph.actions)
        )

    def _update_from(
        self,
        graph: RouteGraph,
        task: torch.Tensor,
        y: torch.Tensor,
        routes: np.ndarray,
        weights: torch.Tensor | None = None,
    ) -> float:
        """:meth:`update` on the routes ``graph`` recorded, with the loss taken from its
        outputs (the forward pass :meth:`update` would repeat, same bits)."""
        padded, layout, leaves = graph.padded, graph.layout, graph.leaves
        by_hand = graph.by_hand
        graph.discard()
        if by_hand:
            return self._step_by_hand(padded, layout, y, leaves, self._by_hand_lr(), weights)
        with torch.enable_grad():
            outputs = padded.index_select(0, layout.tensor("slots", padded.device))
            loss = _weighted_mean(self.per_sample_loss(outputs, y), weights)
        return self._step(loss, leaves, *_trained_rows(routes, task, weights))

    def _step(
        self,
        loss: torch.Tensor,
        leaves: list[tuple[Any, ...]],
        routes_host: np.ndarray,
        task: torch.Tensor,
    ) -> float:
        """Backward from ``loss`` and the optimizer step on the ``leaves`` it reached."""
        value = self._finite_loss(loss)
        lr = self._plain_sgd_lr()
        # With plain SGD and nothing trainable outside the routed layers, the stacked steps
        # below are the whole update: the optimizer would only walk parameters without
        # gradients.
        optimizer_needed = lr is None or self._trained_outside_banks()
        if optimizer_needed:
            self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if lr is not None:
            with torch.no_grad():
                for stack_weight, stack_bias, _, index, weight, bias in leaves:
                    if index is None:  # a prefix of the stack
                        stack_weight[: weight.shape[0]].add_(weight.grad, alpha=-lr)
                        stack_bias[: bias.shape[0]].add_(bias.grad, alpha=-lr)
                    else:
                        stack_weight.index_add_(0, index, weight.grad, alpha=-lr)
                        stack_bias.index_add_(0, index, bias.grad, alpha=-lr)
        else:
            self._set_module_gradients(leaves, routes_host, task)
        if optimizer_needed:
            self.optimizer.step()
        self._updated()
        return value

    def _updated(self) -> None:
        """Count an update and tell the update hooks."""
        self.num_updates += 1
        for hook in list(self._update_hooks.values()):
            hook(self)

    def register_update_hook(self, hook: Callable[[RoutedNetwork], None]) -> RemovableHandle:
        """Call ``hook(network)`` after every module update (e.g. to measure module drift,
        :class:`routing_env.metrics.ModuleDriftRecorder`); the handle's ``remove()`` stops it."""
        if not callable(hook):
            raise TypeError(f"an update hook must be callable, got {type(hook).__name__}")
        handle = RemovableHandle(self._update_hooks)
        self._update_hooks[handle.id] = hook
        return handle

    def _finite_loss(self, loss: torch.Tensor) -> float:
        """The loss as a number; ``FloatingPointError`` if it is not finite."""
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"module loss is {value} at update {self.num_updates + 1}; "
                f"lower module_lr (now {self.module_lr}) or check the data for extreme values"
            )
        return value

    def _by_hand_lr(self) -> float | None:
        """The learning rate when the module update is computed by :meth:`_step_by_hand`:
        layered routing, nothing trained outside the routed layers, no layer that behaves
        differently in training, and this network's own plain SGD; else ``None``."""
        if self.routing != "layered" or self._mode_sensitive or self._trained_outside_banks():
            return None
        return self._plain_sgd_lr()

    def _step_by_hand(
        self,
        padded: torch.Tensor,
        layout: _GroupLayout,
        y: torch.Tensor,
        tape: list[_Product],
        lr: float,
        weights: torch.Tensor | None = None,
    ) -> float:
        """The plain-SGD module update of a chain computed without autograd (its ``tape``),
        ending in the padded batch ``padded`` of ``layout``.

        The backward pass is written out: the mean loss's gradient with respect to the outputs
        (cross-entropy: ``(softmax - one_hot) / n``; mean squared error:
        ``2 (outputs - y) / (n * outputs)``; each row times its route's weight when
        ``weights`` are given, the gradient of :meth:`update`'s weighted mean), then the
        routed layers depth by depth from the last, each depth's step ``W -= lr * x^T g``
        fused into the product that computes its gradient. The arithmetic is the update's
        (the gradient of each gathered row reaches its source row, ReLU passes it where the
        output is positive, the identity slot's rows pass it unchanged); it spares the
        autograd graph's recording and its engine, which cost more than the products on
        batches of this size.
        """
        with torch.no_grad():
            slots = layout.tensor("slots", padded.device)
            outputs = padded.index_select(0, slots)
            value = self._finite_loss(_weighted_mean(self.per_sample_loss(outputs, y), weights))
            if self.task_type == "classification":
                grad = torch.softmax(outputs, 1)
                grad.scatter_add_(1, y.view(-1, 1), grad.new_full((len(grad), 1), -1.0))
                grad.div_(len(grad))
            else:
                grad = (outputs - y.reshape(outputs.shape)).mul_(2.0 / outputs.numel())
            if weights is not None:
                grad.mul_(weights.view(-1, 1))
            grad = torch.zeros_like(padded).index_copy_(0, slots, grad)
            for product in reversed(tape):
                grad = _product_step(product, grad, lr)
        self._updated()
        return value

    def _trained_outside_banks(self) -> bool:
        """Whether a parameter outside the stacked banks (trunk, projection, shared readout)
        is trained."""
        return any(p.requires_grad for p in self._outside_banks)

    def _set_module_gradients(
        self,
        leaves: list[tuple[Any, ...]],
        routes: np.ndarray,
        task: torch.Tensor,
    ) -> None:
        """Sum the leaves' gradients per bank and hand them to the routed members only."""
        sums: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for stack_weight, stack_bias, bank, index, weight, bias in leaves:
                if bank not in sums:
                    sums[bank] = (torch.zeros_like(stack_weight), torch.zeros_like(stack_bias))
                grad_weight, grad_bias = sums[bank]
                if index is None:  # a prefix of the stack
                    grad_weight[: weight.shape[0]].add_(weight.grad)
                    grad_bias[: bias.shape[0]].add_(bias.grad)
                else:
                    grad_weight.index_add_(0, index, weight.grad)
                    grad_bias.index_add_(0, index, bias.grad)
        task_host = None if self._readout_bank is None else _host_indices(task)
        for bank, (grad_weight, grad_bias) in sums.items():
            linears = self._banks[bank]
            for member in self._bank_used(bank, routes, task_host).tolist():
                linears[member].weight.grad = grad_weight[member].t()
                linears[member].bias.grad = grad_bias[member]

    def _plain_sgd_lr(self) -> float | None:
        """The learning rate if the optimizer is this network's own plain SGD, else ``None``."""
        optimizer = self.optimizer
        if self._optimizer_spec != "sgd" or type(optimizer) is not torch.optim.SGD:
            return None
        if len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        if group["momentum"] or group["weight_decay"] or group.get("maximize"):
            return None
        if group.get("differentiable") or _optimizer_has_hooks(optimizer):
            return None
        return float(group["lr"])


class RouteGraph:
    """The forward pass of routing one batch, kept for the module update that trains on it.

    The vector environment routes a batch depth by depth, and :meth:`RoutedNetwork.update`
    used to compute those routes' forward pass again once they ended. Passed to
    :meth:`RoutedNetwork.apply`, a ``RouteGraph`` makes each depth be computed as
    :meth:`RoutedNetwork.update` computes it (same grouping, same batched products, rows kept
    in padded order between depths; with ``by_hand`` the products kept for
    :meth:`RoutedNetwork._step_by_hand`, else with autograd on, on the same weight leaves), so
    the update can start from the kept outputs: the same numbers for one forward pass less.
    :meth:`RoutedNetwork.add_routes` uses it only while it is current (see
    :meth:`RoutedNetwork._graph_current`), else computes the forward pass as before.

    ``leaves`` are the weight leaves (or with ``by_hand`` the ``_Product``) of every depth,
    ``stamps`` the versions of the stacked weights they were read from, ``actions`` the
    actions of each depth so far, ``inputs`` the raw inputs of the routes (the first depth
    applies to their embedding), ``padded`` the activations leaving the last depth so far, in
    the padded order of its ``layout``.
    :meth:`discard` frees the graph.
    """

    __slots__ = ("leaves", "stamps", "actions", "inputs", "padded", "layout", "by_hand", "_open")

    def __init__(self, inputs: torch.Tensor, by_hand: bool = False) -> None:
        self.by_hand = by_hand
        self.leaves: list[Any] = []
        self.stamps: list[tuple[int, int]] = []
        self.actions: list[np.ndarray] = []
        self.inputs: torch.Tensor | None = inputs
        self.padded: torch.Tensor | None = None
        self.layout: _GroupLayout | None = None
        self._open = True

    def expects(self, depth: int, h: torch.Tensor) -> bool:
        """Whether applying ``depth`` to ``h`` continues this graph: the next depth, on the
        previous depth's rows."""
        if not self._open or depth != len(self.actions):
            return False
        rows = self.inputs.shape[0] if self.layout is None else len(self.layout.slots)
        return h.shape[0] == rows

    def discard(self) -> None:
        """Drop the graph (its memory is freed) and refuse further depths."""
        self._open = False
        self.leaves, self.stamps, self.actions = [], [], []
        self.inputs = self.padded = self.layout = None


class _GroupLayout:
    """Where each row of a batch goes in the padded, chunked batched product.

    Rows are grouped by ``groups[i]``; each used group is cut into chunks of ``chunk_size``
    rows: the largest group's size while that at most doubles the rows (one chunk per group),
    else ``ceil(rows / groups used)``. ``sources[j]`` is the row that fills slot ``j`` (row 0
    for padding). ``slots[i]`` is row ``i``'s place in the flattened
    ``(chunks * chunk_size)`` padded batch; ``chunk_groups`` / ``chunk_local`` give each
    chunk's group as a bank index / as a position among the used groups (chunks of a group are
    consecutive, groups in increasing order).
    """

    __slots__ = (
        "used",
        "single",
        "chunk_size",
        "slots",
        "chunk_groups",
        "chunk_local",
        "one_chunk_per_group",
        "sources",
        "_tensors",
        "_last_group",
        "_last_first_slot",
    )

    def __init__(self, groups: np.ndarray, count: int) -> None:
        self._tensors: dict[tuple[str, torch.device], torch.Tensor] = {}
        rows = len(groups)
        # Array methods rather than np.* functions: this runs once per routed layer and step
        # on small arrays, where the functions' dispatch costs as much as the work.
        sizes = np.bincount(groups, minlength=count)
        if sizes.shape[0] > count:
            raise IndexError(f"group index {int(groups.max())} is outside 0..{count - 1}")
        self.used = sizes.nonzero()[0]
        groups_used = len(self.used)
        self.single = groups_used == 1
        self.chunk_groups = self.used
        self.chunk_local = np.zeros(1, dtype=np.int64)
        self.one_chunk_per_group = True
        # The last used group (the identity slot, when used) and its first padded slot.
        self._last_group = int(self.used[-1]) if groups_used else -1
        self._last_first_slot = 0
        if self.single:  # one chunk holding the rows in order
            self.chunk_size = rows
            self.slots = self.sources = np.arange(rows)
            return
        used_sizes = sizes[self.used]
        largest = int(used_sizes.max())
        # One chunk per group (no weights to gather) while padding at most doubles the rows;
        # else chunks of the mean group size, which bounds the padding whatever the spread.
        first_chunk = np.zeros(count, dtype=np.int64)  # each used group's first chunk
        if largest * groups_used <= 2 * rows:
            size = largest
            self.chunk_local = np.arange(groups_used)
            first_chunk[self.used] = self.chunk_local
        else:
            size = -(-rows // groups_used)
            chunks_per_group = -(-used_sizes // size)
            ends = chunks_per_group.cumsum()
            self.chunk_local = np.arange(groups_used).repeat(chunks_per_group)
            first_chunk[self.used] = ends - chunks_per_group
        self.chunk_size = size
        self.chunk_groups = self.used[self.chunk_local]
        # With one chunk per used group, chunk i is used group i: when every member of the bank
        # is used, the stacked weights serve as they are.
        self.one_chunk_per_group = len(self.chunk_local) == groups_used
        # Rows sorted by group fill their group's chunks in order: the slot of the r-th row of
        # the sorted batch is r + (first slot of its group's chunks - first row of its group).
        first_row = sizes.cumsum() - sizes
        shift = first_chunk * size - first_row
        order = groups.argsort(kind="stable")
        self.slots = np.empty(rows, dtype=np.int64)
        self.slots[order] = np.arange(rows) + shift[groups[order]]
        self.sources = np.zeros(len(self.chunk_local) * size, dtype=np.int64)
        self.sources[self.slots] = np.arange(rows)
        self._last_first_slot = int(first_chunk[self._last_group]) * size

    def first_slot_of(self, group: int) -> int | None:
        """The first padded slot of ``group`` (the last group used), or ``None`` if unused."""
        if self._last_group != group:
            return None
        return self._last_first_slot

    def tensor(self, name: str, device: torch.device) -> torch.Tensor:
        """Index array ``name`` as a tensor on ``device`` (made once)."""
        key = (name, device)
        value = self._tensors.get(key)
        if value is None:
            value = torch.from_numpy(getattr(self, name)).to(device)
            self._tensors[key] = value
        return value


def draw_default_init(layer: nn.Linear | nn.Conv2d, generator: torch.Generator) -> None:
    """Draw ``layer``'s weight and bias from ``generator`` with PyTorch's default scheme,
    uniform in ``±1/sqrt(fan_in)`` (in place, without autograd)."""
    bound = 1.0 / math.sqrt(layer.weight[0].numel())
    with torch.no_grad():
        for tensor in (layer.weight, layer.bias):
            if tensor is not None:
                tensor.copy_(torch.empty(tensor.shape).uniform_(-bound, bound, generator=generator))


class _Product(NamedTuple):
    """One depth of a chain computed for :meth:`RoutedNetwork._step_by_hand`: the stacked
    weight and bias it read and their bank, the stack rows of its chunks (``None`` for a
    prefix), those chunks' weight, the modules' padded inputs ``(chunks, size, in)`` and their
    outputs after ReLU (``None`` without ReLU; ``None`` for all these when every row took the
    identity), the gather ``sources`` into the previous depth's batch, the first identity slot
    ``start``, and the shape of that previous batch (``None`` at the first depth, whose input
    needs no gradient)."""

    stack_weight: torch.Tensor
    stack_bias: torch.Tensor
    bank: int
    index: torch.Tensor | None
    weight: torch.Tensor | None
    inputs: torch.Tensor | None
    activations: torch.Tensor | None
    sources: torch.Tensor
    start: int
    source_shape: torch.Size | None


def _product_step(product: _Product, grad: torch.Tensor, lr: float) -> torch.Tensor | None:
    """Backward through one depth of a chain from ``grad``, the gradient of its padded
    output, with the SGD step of its modules; returns the gradient of the previous depth's
    padded batch (``None`` at the first depth)."""
    weight, start, source_shape = product.weight, product.start, product.source_shape
    # The gradient of this depth's padded inputs, slot by slot; the identity slot's rows (from
    # `start` on) pass theirs unchanged.
    grad_inputs = grad
    if weight is not None:
        whole = start == grad.shape[0]
        through = grad if whole else grad[:start]
        if product.activations is not None:
            through = torch.ops.aten.threshold_backward(through, product.activations, 0)
        chunks = weight.shape[0]
        through = through.view(chunks, -1, through.shape[1])
        if source_shape is not None:  # before the step below changes the weight
            weight_t = weight.transpose(1, 2)
            if whole:
                grad_inputs = torch.bmm(through, weight_t).view(start, -1)
            elif product.activations is not None:
                # A square layer whose ReLU mask copied the modules' rows into `through`:
                # their input gradient takes their place in `grad`, before the identity rows.
                torch.bmm(through, weight_t, out=grad[:start].view(through.shape))
            else:
                modules = torch.bmm(through, weight_t).view(start, -1)
                grad_inputs = torch.cat((modules, grad[start:]))
        inputs_t, grad_bias = product.inputs.transpose(1, 2), through.sum(1)
        if product.index is None:
            product.stack_weight[:chunks].baddbmm_(inputs_t, through, alpha=-lr)
            product.stack_bias[:chunks].add_(grad_bias, alpha=-lr)
        else:
            grad_weight = torch.bmm(inputs_t, through)
            product.stack_weight.index_add_(0, product.index, grad_weight, alpha=-lr)
            product.stack_bias.index_add_(0, product.index, grad_bias, alpha=-lr)
    if source_shape is None:
        return None
    return grad.new_zeros(source_shape).index_add_(0, product.sources, grad_inputs)


def _weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``losses.mean()``, or ``(weights * losses).mean()`` with per-route weights."""
    return losses.mean() if weights is None else (losses * weights).mean()


def _trained_rows(
    routes: np.ndarray, task: torch.Tensor, weights: torch.Tensor | None
) -> tuple[np.ndarray, torch.Tensor]:
    """The routes and tasks of the rows that train: those of weight > 0. The optimizer step
    hands gradients only to the modules these rows used, so a route of weight 0 moves no
    module, not even through an adaptive optimizer's momentum."""
    if weights is None:
        return routes, task
    keep = (weights > 0).cpu().numpy()
    if keep.all():
        return routes, task
    return routes[keep], task[torch.from_numpy(keep).to(task.device)]


def _host_indices(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Integer indices as a NumPy ``int64`` array (one device-to-host copy for a tensor)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    if values.dtype != np.int64:
        values = values.astype(np.int64)
    return values


def _data_pointers(linears: list[nn.Linear]) -> list[int]:
    # Through `_parameters`: nn.Module.__getattr__ costs more than the check itself.
    tables = [linear._parameters for linear in linears]
    return [table["weight"].data_ptr() for table in tables] + [
        table["bias"].data_ptr() for table in tables
    ]


def _optimizer_has_hooks(optimizer: torch.optim.Optimizer) -> bool:
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or optimizer_module._global_optimizer_pre_hooks
        or optimizer_module._global_optimizer_post_hooks
    )


def _linear_of(module: nn.Module) -> nn.Linear:
    return module[0] if isinstance(module, nn.Sequential) else module


def _linear_view(module: nn.Module) -> tuple[np.ndarray, np.ndarray, bool]:
    linear = _linear_of(module)
    return (
        linear.weight.detach().numpy(),
        linear.bias.detach().numpy(),
        isinstance(module, nn.Sequential),
    )


def _module(in_dim: int, out_dim: int, relu: bool = True) -> nn.Module:
    if relu:
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())
    return nn.Linear(in_dim, out_dim)
