"""The routed network: a shared trunk, routed module layers and a readout.

A routing network (``001`` section 3, Algorithm 1; ``000`` section 3.1.1, Algorithm 3.1)
applies a sequence of modules chosen per sample. :class:`RoutedNetwork` owns the trainable
parts and, through its :class:`~routing_env.network.trainer.ModuleTrainer` half, the module
optimizer; it knows nothing about agents. Environments call it to

* embed a raw input through the trunk (:meth:`RoutedNetwork.embed`),
* apply the chosen modules at one depth to a batch, grouped by module
  (:meth:`RoutedNetwork.apply`, computed by the grouped kernel,
  :class:`~routing_env.network.kernel.GroupedBanks`), or to one sample in NumPy
  (:meth:`RoutedNetwork.step_sample`),
* turn a finished route's activation into outputs (:meth:`RoutedNetwork.outputs`),
* hand over finished routes for training (:meth:`RoutedNetwork.add_routes`, the module trainer,
  ``001`` Algorithm 2 step 3). A batch routed with a
  :class:`~routing_env.network.graph.RouteGraph` (:meth:`RoutedNetwork.record_routes`) keeps
  what its routing forward pass computed, and the update that trains on exactly that batch
  starts from it instead of computing the pass again (same numbers).

Routing modes (DESIGN section 2):

* ``"layered"`` (``001`` "routing-all-fc"): depth ``d`` chooses among the modules of layer
  ``d``; the last layer emits the outputs (class logits). The extra action (index
  ``num_modules``) is PASS, the identity, allowed only where a layer's input and output sizes
  match (``001`` section 7.2).
* ``"recurrent"`` (``000`` section 5.3): one bank of ``hidden_dim -> hidden_dim`` modules reused
  at every depth; the extra action is stop (⊥); a route also ends after ``max_depth`` modules.
  A non-routed readout, shared or one per task, emits the outputs.

Routes are passed around as integer arrays of shape ``(batch, max_depth)``, padded with ``-1``
after the route's last action. Each routed layer (and the per-task readout heads) is one bank
of the grouped kernel: the modules' parameters are views of the bank's stacked weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from routing_env.network import compiled
from routing_env.network.graph import RouteGraph
from routing_env.network.kernel import GroupedBanks, Leaf, host_indices
from routing_env.network.rows import RowPlan, record_depth, serves
from routing_env.network.trainer import ModuleTrainer, OptimizerFactory
from routing_env.trunks import IdentityTrunk, build_trunk

ROUTINGS = ("layered", "recurrent")


class RoutedNetwork(ModuleTrainer, nn.Module):
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
        module_lr_anneal_every: divide the module learning rate by 10 every this many routes
            trained on (counted in module batches; ``001`` section 4 divides by 10 every 20
            epochs, :mod:`routing_env.schedules`); ``None`` keeps it constant.
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
        module_lr_anneal_every: int | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_arguments(
            routing=routing,
            task_type=task_type,
            readout=readout,
            module_lr=module_lr,
            num_tasks=num_tasks,
            num_outputs=num_outputs,
            num_modules=num_modules,
            max_depth=max_depth,
            hidden_dim=hidden_dim,
            module_batch_size=module_batch_size,
        )
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
        if module_lr_anneal_every is not None and (
            isinstance(module_lr_anneal_every, bool)
            or not isinstance(module_lr_anneal_every, int)
            or module_lr_anneal_every < 1
        ):
            raise ValueError(
                "module_lr_anneal_every must be a positive number of routes or None, got "
                f"{module_lr_anneal_every!r}"
            )
        self.module_lr_anneal_every = module_lr_anneal_every
        self.device = torch.device(device)
        self._init_trainer(module_optimizer)

        # Modules draw their default initialisation from the global RNG; fork it so that
        # building a network leaves the caller's torch stream untouched (reset_parameters
        # then draws the real values from `seed`).
        with torch.random.fork_rng(devices=[]):
            self._build_modules(trunk)
        self._identity_embedding = isinstance(self.trunk, IdentityTrunk) and self.projection is None
        # Plain lists: indexing an nn.ModuleList costs more than the module call on one sample.
        self._module_lists = [list(layer) for layer in self.layers]
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
        self._kernel = self._build_kernel()
        # Layered routes of small batches as stack rows (the per-row kernel of the update).
        self._row_plan = (
            RowPlan(self._kernel, list(range(self.max_depth))) if routing == "layered" else None
        )
        in_banks = {
            id(p) for linears in self._kernel.banks for m in linears for p in m.parameters()
        }
        self._outside_banks = [p for p in self.parameters() if id(p) not in in_banks]

    def _build_modules(self, trunk: str | nn.Module) -> None:
        """The trunk, the routed layers (a bank in recurrent mode), projection and readout."""
        self.trunk = build_trunk(trunk, self.input_shape, self.hidden_dim)
        trunk_dim = self.trunk.output_dim
        self.projection: nn.Module | None = None
        self.readout: nn.Module | None = None
        if self.routing == "layered":
            self.in_dims = [trunk_dim] + [self.hidden_dim] * (self.max_depth - 1)
            self.out_dims = [self.hidden_dim] * (self.max_depth - 1) + [self.num_outputs]
            self.layers = nn.ModuleList(
                nn.ModuleList(
                    _module(self.in_dims[d], self.out_dims[d], relu=d < self.max_depth - 1)
                    for _ in range(self.num_modules)
                )
                for d in range(self.max_depth)
            )
        else:
            if trunk_dim != self.hidden_dim:
                self.projection = _module(trunk_dim, self.hidden_dim)
            bank = nn.ModuleList(
                _module(self.hidden_dim, self.hidden_dim) for _ in range(self.num_modules)
            )
            self.layers = nn.ModuleList([bank])
            self.in_dims = [self.hidden_dim] * self.max_depth
            self.out_dims = [self.hidden_dim] * self.max_depth
            heads = self.num_tasks if self.readout_kind == "per_task" else 1
            self.readout = nn.ModuleList(
                nn.Linear(self.hidden_dim, self.num_outputs) for _ in range(heads)
            )
        self.activation_dim = max([trunk_dim, self.hidden_dim, self.num_outputs])

    def _build_kernel(self) -> GroupedBanks:
        """The banks of same-shaped linears computed together: one per routed layer, plus the
        per-task readout heads (bank ``_readout_bank``)."""
        banks = [[_linear_of(module) for module in layer] for layer in self._module_lists]
        relu = [isinstance(layer[0], nn.Sequential) for layer in self._module_lists]
        identity = [
            self.routing == "recurrent" or self.in_dims[depth] == self.out_dims[depth]
            for depth in range(len(self._module_lists))
        ]
        self._readout_bank: int | None = None
        if self.readout is not None and len(self.readout) > 1:
            self._readout_bank = len(banks)
            banks.append(list(self.readout))
            relu.append(False)
            identity.append(False)
        return GroupedBanks(banks, relu, identity)

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

    def _bank_of(self, depth: int) -> int:
        """The kernel bank, and index into the routed layers, of ``depth``."""
        return 0 if self.routing == "recurrent" else depth

    def _bank_used(self, bank: int, routes: np.ndarray, task: np.ndarray | None) -> np.ndarray:
        """Members of ``bank`` that some row of the batch goes through."""
        if bank == self._readout_bank:
            values = task
        elif self.routing == "recurrent":
            values = routes.ravel()
        else:
            values = routes[:, bank]
        return self._kernel.members_used(bank, values)

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
        self._reset_trainer()

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> RoutedNetwork:
        # Moving or casting parameters replaces their storage: the kernel stacks the banks and
        # takes NumPy views again on first use.
        result = super()._apply(fn, recurse)
        kernel = self.__dict__.get("_kernel")
        if kernel is not None:
            kernel.invalidate()
        return result

    def _drop_unrouted_gradients(
        self, routes: torch.Tensor | np.ndarray, task: torch.Tensor | np.ndarray | None = None
    ) -> None:
        """Set to ``None`` the (zero) gradients of modules no route in the batch used (and,
        given the routes' ``task``, of per-task readout heads no route used).

        Optimizers skip parameters without a gradient, so momentum or adaptive state never
        moves a module that was not on a route (``001`` Algorithm 2 step 3). :meth:`update`
        never gives such modules a gradient in the first place; this serves callers that run
        their own backward pass through :meth:`forward`.
        """
        routes = host_indices(routes)
        task = None if task is None else host_indices(task)
        for bank, linears in enumerate(self._kernel.banks):
            if bank == self._readout_bank and task is None:
                continue
            used = set(self._bank_used(bank, routes, task).tolist())
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
        if self.device.type != "cpu":
            with torch.no_grad():
                h_tensor = torch.from_numpy(h).to(self.device).unsqueeze(0)
                return self._module_lists[layer][action](h_tensor)[0].cpu().numpy()
        weight, bias, relu = self._kernel.numpy_views()[layer][action]
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

    # ------------------------------------------------------------------ batches

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The first activation of a batch of raw inputs: trunk (and projection)."""
        if self._identity_embedding:
            return x.flatten(1)  # the identity trunk's forward, without a module call
        h = self.trunk(x)
        if self.projection is not None:
            h = self.projection(h)
        return h

    def apply_one(self, h: torch.Tensor, depth: int, action: int) -> torch.Tensor:
        """Apply one action at ``depth`` to a batch that all took it (PASS / ⊥ is identity)."""
        if action == self.extra_action:
            return h
        return self._module_lists[self._bank_of(depth)][action](h)

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
        and computed in one batched product (:class:`~routing_env.network.kernel.GroupedBanks`);
        a small batch (at most :data:`~routing_env.network.rows.MAX_ROWS` rows) without
        autograd on the CPU row by row instead (:func:`routing_env.network.compiled.forward`),
        where grouping costs more than it saves. Only the chosen modules' parameters take part
        in the computation, so only they receive gradients.

        ``graph`` (from :meth:`record_routes`) computes this depth with autograd on, whatever
        the caller's grad mode, and keeps its graph for the module update (:class:`RouteGraph`).
        """
        bank = self._bank_of(depth)
        actions = host_indices(actions)
        if len(actions) == 0:
            return h
        groups = self._kernel.groups(bank, actions)
        if graph is not None:
            if groups is not None and graph.expects(depth, h):
                return self._apply_recorded(graph, bank, h, groups, actions)
            graph.discard()
        if groups is not None and serves(len(groups)) and not torch.is_grad_enabled():
            stack = self._kernel.row_stack(bank)
            if compiled.supported([stack]) and h.device.type == "cpu" and h.dtype == torch.float32:
                # A small batch (a vector env of a few envs), routed: rows one by one, compiled.
                return compiled.forward(stack, self._kernel.relu[bank], h, groups)
        return self._apply_groups(h, depth, actions, groups)

    def _apply_groups(
        self,
        h: torch.Tensor,
        depth: int,
        actions: np.ndarray,
        groups: np.ndarray | None,
        leaves: list[Leaf] | None = None,
    ) -> torch.Tensor:
        """:meth:`apply` without a graph, given the kernel's ``groups`` of ``actions`` (``None``:
        some rows take PASS or ``-1`` at a layer whose sizes differ); ``leaves`` as in
        :meth:`forward`."""
        bank = self._bank_of(depth)
        if groups is not None:
            return self._kernel.linear(bank, h, groups, leaves)
        # PASS or -1 at a layer whose sizes differ: only possible if no row changes size.
        chosen = np.flatnonzero((actions >= 0) & (actions != self.extra_action))
        if chosen.size == 0:
            return h
        rows = torch.from_numpy(chosen).to(h.device)
        out = self._kernel.linear(bank, h.index_select(0, rows), actions[chosen], leaves)
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
        """One depth of a recorded batch, computed as the kernel's chain computes it inside
        :meth:`update` (the rows kept in padded order from one depth to the next; with
        ``graph.by_hand`` the products kept on the graph's tape, else with autograd on, the
        weight leaves kept; for a batch that the per-row kernel updates, as its chain computes
        it). Returns the rows in batch order, without graph."""
        kernel = self._kernel
        if graph.rows:
            with torch.no_grad():
                out = record_depth(kernel, bank, h, groups, graph.records)
            graph.extend(actions, out, None)
            return out.squeeze(1)
        layout = kernel.layout(bank, groups)
        device = h.device
        if graph.layout is None:
            source, index = h, layout.tensor("sources", device)
        else:
            source = graph.padded
            index = torch.from_numpy(graph.layout.slots[layout.sources]).to(device)
        records = graph.records
        with torch.set_grad_enabled(not graph.by_hand):
            if graph.by_hand:
                out = kernel.product(bank, source, index, layout, tape=records)
            else:
                out = kernel.product(bank, source, index, layout, leaves=records)
        graph.extend(actions, out, layout)
        return out.detach().index_select(0, layout.tensor("slots", device))

    def record_routes(self, x: torch.Tensor) -> RouteGraph | None:
        """A :class:`RouteGraph` to route the batch of raw inputs ``x`` with (the caller applies
        the first depth to ``embed(x)``), or ``None`` where reuse is not supported.

        Supported: layered routing with nothing trained outside the routed layers and no layer
        that behaves differently in training (batch norm, dropout): there the routing forward
        pass is exactly the computation :meth:`update` would repeat. Only a batch of exactly
        ``module_batch_size`` routes can train from its graph (:meth:`add_routes`), so other
        batches get ``None`` and route without recording.
        """
        if self.routing != "layered" or self._mode_sensitive or self._trained_outside_banks():
            return None
        if x.shape[0] != self.module_batch_size:
            return None
        by_hand = self._by_hand_lr() is not None
        rows = by_hand and serves(x.shape[0])
        if rows and compiled.supported(self._row_plan.stacks()):
            return None  # the compiled update computes its forward pass faster than a record
        return RouteGraph(x, by_hand=by_hand, rows=rows)

    def outputs(
        self,
        h: torch.Tensor,
        task: torch.Tensor | np.ndarray,
        *,
        leaves: list[Leaf] | None = None,
    ) -> torch.Tensor:
        """Outputs (logits or regression values) of finished routes' activations; ``leaves``
        as in :meth:`forward`."""
        if self.readout is None:
            return h
        if self._readout_bank is None:
            return self.readout[0](h)
        return self._kernel.linear(self._readout_bank, h, host_indices(task), leaves)

    def forward(
        self,
        x: torch.Tensor,
        task: torch.Tensor,
        routes: torch.Tensor,
        *,
        leaves: list[Leaf] | None = None,
    ) -> torch.Tensor:
        """Outputs of whole routes: ``routes`` is ``(batch, max_depth)``, padded with ``-1``.

        ``leaves``: the module update's record (:class:`~routing_env.network.kernel.Leaf`):
        given a list, every batched product reads its weights as detached leaves and appends
        them there, so that the update applies their gradients to the stacks.
        """
        routes = host_indices(routes)
        h = self.embed(x)
        steps = self._route_steps(routes)
        if steps is not None:
            h = self._kernel.chain(h, steps, leaves)
        elif len(routes):
            for depth in range(routes.shape[1]):
                actions = routes[:, depth]
                groups = self._kernel.groups(self._bank_of(depth), actions)
                h = self._apply_groups(h, depth, actions, groups, leaves)
        return self.outputs(h, task, leaves=leaves)

    def _route_steps(self, routes: np.ndarray) -> list[tuple[int, np.ndarray]] | None:
        """Each depth's bank and members of whole routes, for the kernel's chain, or ``None``
        when it cannot compute them (no routes, or PASS / ``-1`` at a layer whose sizes
        differ)."""
        if not len(routes):
            return None
        steps = []
        for depth in range(routes.shape[1]):
            bank = self._bank_of(depth)
            members = self._kernel.groups(bank, routes[:, depth])
            if members is None:
                return None
            steps.append((bank, members))
        return steps

    def per_sample_loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (classification) or mean squared error (regression) per sample."""
        if self.task_type == "classification":
            return F.cross_entropy(outputs, y, reduction="none")
        target = y.reshape(outputs.shape)
        return ((outputs - target) ** 2).mean(dim=1)


def draw_default_init(layer: nn.Linear | nn.Conv2d, generator: torch.Generator) -> None:
    """Draw ``layer``'s weight and bias from ``generator`` with PyTorch's default scheme,
    uniform in ``±1/sqrt(fan_in)`` (in place, without autograd)."""
    bound = 1.0 / math.sqrt(layer.weight[0].numel())
    with torch.no_grad():
        for tensor in (layer.weight, layer.bias):
            if tensor is not None:
                tensor.copy_(torch.empty(tensor.shape).uniform_(-bound, bound, generator=generator))


def _check_arguments(
    *, routing: str, task_type: str, readout: str, module_lr: float, **sizes: Any
) -> None:
    """``ValueError`` naming the first bad argument of :class:`RoutedNetwork`."""
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")
    if task_type not in ("classification", "regression"):
        raise ValueError(f"unknown task_type {task_type!r}")
    if readout not in ("shared", "per_task"):
        raise ValueError(f"unknown readout {readout!r}; expected 'shared' or 'per_task'")
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not module_lr > 0:
        raise ValueError(f"module_lr must be positive, got {module_lr!r}")


def _linear_of(module: nn.Module) -> nn.Linear:
    return module[0] if isinstance(module, nn.Sequential) else module


def _module(in_dim: int, out_dim: int, relu: bool = True) -> nn.Module:
    if relu:
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())
    return nn.Linear(in_dim, out_dim)
