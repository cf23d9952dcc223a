"""The module trainer: ``001`` Algorithm 2 step 3, training the modules on finished routes.

The step, as :func:`reference_update` writes it with plain autograd: forward the routes, take
each sample's loss, average them (weighted by the routes' weights), backward, optimizer step.
Gradients reach only the modules on the routes (plus trunk and readout), so no optimizer state
moves a module that no route used.

:class:`ModuleTrainer` is the half of :class:`~routing_env.network.RoutedNetwork` that does it
during training: it queues finished routes (:meth:`ModuleTrainer.add_routes`) and updates once
per ``module_batch_size`` of them (:meth:`ModuleTrainer.update`), with the same arithmetic as
the reference computed one of three ways:

* **by hand** in the default case (layered routing, this network's plain SGD, nothing trained
  outside the routed layers, no batch norm or dropout): the routes are computed without
  autograd, keeping each depth's :class:`~routing_env.network.kernel.Product`, and the backward
  pass is written out (:meth:`ModuleTrainer._step_by_hand`): the loss gradient, then depth by
  depth from the last the ReLU mask, the input gradient, and the step on the stacked weights
  fused into the batched product that computes the weight gradient
  (:func:`~routing_env.network.kernel.backward_step`). On batches of a few hundred routes,
  recording an autograd graph and running its engine cost more than the products. Small
  batches (the default module batch of 16 routes) take the per-row kernel instead
  (:mod:`routing_env.network.rows`: each row reads its own module's weights, no grouping),
  the same arithmetic without the grouping's fixed costs, compiled on the CPU
  (:mod:`routing_env.network.compiled`: forward, loss, backward and step in one call); the
  updates that one arrival of routes makes (a vector env's 256 finished routes are 16 updates)
  share the host's work, the checks, stack rows and index tensors, done once for all of them;
* **autograd on stack leaves** elsewhere: the weights each batched product read are detached
  leaves (:class:`~routing_env.network.kernel.Leaf`); under plain SGD their gradients step the
  stacks directly, else they are handed to the routed members' parameters and the optimizer
  steps;
* either of these **from a** :class:`~routing_env.network.graph.RouteGraph`: the vector env's
  routing pass recorded the same products or leaves, and the update starts from them instead of
  computing the forward pass again (same numbers).

:func:`reference_update` is what ``tests/test_network.py`` checks these paths against.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.optim import optimizer as optimizer_module
from torch.utils.hooks import RemovableHandle

from routing_env.network import compiled, rows
from routing_env.network.graph import RouteGraph
from routing_env.network.kernel import (
    GroupLayout,
    Leaf,
    Product,
    RowStack,
    backward_step,
    host_indices,
)
from routing_env.network.rows import RowBatch, RowProduct
from routing_env.schedules import annealed_lr

if TYPE_CHECKING:
    from routing_env.network.model import RoutedNetwork


def reference_update(
    network: RoutedNetwork,
    x: torch.Tensor,
    task: torch.Tensor,
    y: torch.Tensor,
    routes: torch.Tensor | np.ndarray,
    weights: torch.Tensor | None = None,
) -> float:
    """One module update written plainly with autograd: ``001`` Algorithm 2 step 3.

    The seed's step: "compute the loss L(y_hat, y) between prediction y_hat and ground truth
    y and backpropagate along the function blocks on the selected route to train their
    parameters", here on a batch of finished routes: forward the routes (``(batch,
    max_depth)``, padded with ``-1``), take each sample's loss, average them (with route
    weights ``mean(weights * losses)``, the exploration squashing of ``000`` eq. 7.4),
    backward, and step the network's optimizer. A module that no route of weight > 0 went
    through gets no gradient, so not even an adaptive optimizer's state moves it. Returns the
    loss.

    :meth:`ModuleTrainer.update` takes the same step (and counts it, and calls the update
    hooks); this is its specification, not the path training uses.
    """
    network.train()  # batch norm on the batch's statistics, dropout on
    with torch.enable_grad():
        losses = network.per_sample_loss(network(x, task, routes), y)
        loss = losses.mean() if weights is None else (losses * weights).mean()
    network.eval()
    network.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trained = slice(None) if weights is None else (weights > 0).cpu().numpy()
    network._drop_unrouted_gradients(host_indices(routes)[trained], host_indices(task)[trained])
    network.optimizer.step()
    return loss.item()


OptimizerFactory = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


class ModuleTrainer:
    """The module trainer of :class:`~routing_env.network.RoutedNetwork` (mixed into it).

    It owns the module optimizer, the queue of finished routes and the update hooks, and takes
    from the network its structure (``routing``, ``task_type``, ``module_lr``,
    ``module_batch_size``, ``module_lr_anneal_every``, ``device``), its forward pieces
    (``embed``, ``forward`` with ``leaves``, ``per_sample_loss``, ``_route_steps``,
    ``_bank_used``), its grouped kernel (``_kernel``, ``_readout_bank``, ``_outside_banks``,
    ``_mode_sensitive``) and the plan of its per-row kernel (``_row_plan``).
    """

    optimizer: torch.optim.Optimizer
    num_updates: int

    def _init_trainer(self, module_optimizer: str | OptimizerFactory) -> None:
        self._optimizer_spec = module_optimizer
        # An OrderedDict, as nn.Module keeps its hooks: RemovableHandle refers to it weakly.
        self._update_hooks: OrderedDict[int, Callable[[RoutedNetwork], None]] = OrderedDict()

    def _reset_trainer(self) -> None:
        """A new optimizer, no update made, no route queued."""
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

    # ------------------------------------------------------------------ the queue

    def trainer_state(self) -> dict[str, Any]:
        """What the trainer needs to continue exactly: the optimizer's state, the update count
        and the queued routes (joined into one batch of tensors)."""
        pending = None
        if self._pending:
            columns = zip(*(queued[:4] for queued in self._pending), strict=True)
            x, task, y, routes = (torch.cat(parts).detach().cpu() for parts in columns)
            weights = self._joined_pending_weights()
            pending = {
                "x": x,
                "task": task,
                "y": y,
                "routes": routes,
                "weights": None if weights is None else weights.detach().cpu(),
            }
        return {
            "optimizer": self.optimizer.state_dict(),
            "num_updates": int(self.num_updates),
            "pending": pending,
        }

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`trainer_state` (the parameters are loaded separately)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        pending = state["pending"]
        self._pending = []
        self._pending_count = 0
        if pending is not None:
            device = self.device
            queued = [pending[key].to(device) for key in ("x", "task", "y", "routes")]
            weights = pending["weights"]
            self._pending = [(*queued, None if weights is None else weights.to(device))]
            self._pending_count = int(queued[0].shape[0])

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
            weights = self._checked_weights(weights, x.shape[0])
        if graph is not None and self._pending_count == 0 and x.shape[0] == self.module_batch_size:
            routes_host = host_indices(routes)
            if self._graph_current(graph, x, routes_host):
                self._update_from(graph, task, y, routes_host, weights)
            else:
                graph.discard()
                self.update(x, task, y, routes_host, weights)
            return 1
        self._pending.append((x, task, y, routes, weights))
        self._pending_count += x.shape[0]
        if self._pending_count < self.module_batch_size:
            return 0
        if len(self._pending) == 1:
            xs, tasks, ys, all_routes, all_weights = self._pending[0]
        else:
            columns = zip(*(queued[:4] for queued in self._pending), strict=True)
            xs, tasks, ys, all_routes = (torch.cat(parts) for parts in columns)
            all_weights = self._joined_pending_weights()
        # One host copy of the routes and one split of each column for all the updates.
        size = self.module_batch_size
        updates = self._pending_count // size
        start = updates * size
        routes_host = host_indices(all_routes[:start])
        weights_in = None if all_weights is None else all_weights[:start]
        if not self._update_rows_in_order(xs[:start], ys[:start], routes_host, weights_in):
            columns = [column.split(size) for column in (xs, tasks, ys)]
            weight_parts = [None] * updates if all_weights is None else all_weights.split(size)
            for batch in range(updates):
                self.update(
                    columns[0][batch],
                    columns[1][batch],
                    columns[2][batch],
                    routes_host[batch * size : (batch + 1) * size],
                    weight_parts[batch],
                )
        if start == self._pending_count:
            self._pending = []
        else:
            rest = None if all_weights is None else all_weights[start:]
            self._pending = [(xs[start:], tasks[start:], ys[start:], all_routes[start:], rest)]
        self._pending_count -= start
        return updates

    def _checked_weights(self, weights: torch.Tensor, routes: int) -> torch.Tensor:
        """``weights`` as a float tensor on the network's device; ``ValueError`` unless they
        hold one finite value ``>= 0`` per route."""
        weights = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        if weights.shape != (routes,):
            raise ValueError(
                f"weights must hold one value per route, shape ({routes},); "
                f"got shape {tuple(weights.shape)}"
            )
        if not bool(((weights >= 0) & torch.isfinite(weights)).all()):
            raise ValueError(f"route weights must be finite and >= 0, got {weights.tolist()}")
        return weights

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

    # ------------------------------------------------------------------ the update

    def update(
        self,
        x: torch.Tensor,
        task: torch.Tensor,
        y: torch.Tensor,
        routes: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> float:
        """One optimizer step on the mean loss of the given routes; returns that loss.

        The step of :func:`reference_update`: gradients reach only the modules on the routes
        (plus trunk and readout); the others keep ``grad = None``, so no optimizer state moves
        them (``001`` Algorithm 2 step 3). With the default plain SGD (no momentum, no weight
        decay) the modules' step ``p -= lr * grad`` is taken on each layer's stacked weights at
        once, which is the same arithmetic (an unrouted module's gradient is exactly zero
        there); the modules' parameters then never hold a ``grad``, and the optimizer object is
        called only for parameters outside the routed layers (trunk, projection, shared
        readout), if any. In layered routing with nothing trained outside the routed layers,
        the backward pass is also written out (:meth:`_step_by_hand`, module docstring).

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
        routes_host = host_indices(routes)
        lr = self._by_hand_lr()
        if lr is not None and rows.serves(len(routes_host)):
            plan = self._row_plan
            batches = plan.batches(routes_host, len(routes_host), self.device)
            if batches is not None:
                stacks = plan.stacks()
                arrays = self._compiled_arrays(stacks)
                # Inference mode: no record of views and versions on the update's temporaries.
                with torch.inference_mode():
                    value = self._row_update(stacks, arrays, x, y, batches[0], lr, weights)
                if arrays is not None:
                    compiled.bump_versions(stacks)
                self._updated()
                return value
        steps = None if lr is None else self._route_steps(routes_host)
        if steps is not None:
            tape: list[Product] = []
            with torch.no_grad():
                padded, layout = self._kernel.chain_padded(self.embed(x), steps, tape=tape)
                value = self._step_by_hand(padded, layout, y, tape, lr, weights)
            self._updated()
            return value
        leaves: list[Leaf] = []
        if self._mode_sensitive:
            self.train()
        try:
            # Callers may route under no_grad (the vector env does); the update needs autograd.
            with torch.enable_grad():
                outputs = self(x, task, routes_host, leaves=leaves)
                loss = _weighted_mean(self.per_sample_loss(outputs, y), weights)
        finally:
            if self._mode_sensitive:
                self.eval()
        return self._step(loss, leaves, *_trained_rows(routes_host, task, weights))

    def _row_update(
        self,
        stacks: list[RowStack],
        arrays: compiled.StackArrays | None,
        x: torch.Tensor,
        y: torch.Tensor,
        batch: RowBatch,
        lr: float,
        weights: torch.Tensor | None,
    ) -> float:
        """The by-hand update of one batch through the per-row kernel, compiled where
        ``arrays`` (:meth:`_compiled_arrays`) are given; returns its loss. The compiled update
        leaves the stacks' version counters to the caller (:func:`compiled.bump_versions`)."""
        h = self.embed(x)
        if arrays is not None:
            return self._finite_loss(
                compiled.sgd_rows(*arrays, batch.members, *self._compiled_rows(h, y, weights), lr)
            )
        tape: list[RowProduct] = []
        outputs = rows.chain(self._row_plan, stacks, h, batch, tape)
        return self._step_by_hand(outputs, None, y, tape, lr, weights)

    def _compiled_arrays(self, stacks: list[RowStack]) -> compiled.StackArrays | None:
        """The stacks as :func:`compiled.sgd_rows` reads them, or ``None`` where it does not
        serve them (not float32 on the CPU)."""
        if not compiled.supported(stacks):
            return None
        return compiled.stack_arrays(
            stacks, [self._kernel.relu[bank] for bank in self._row_plan.banks]
        )

    def _compiled_rows(
        self, h: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None
    ) -> tuple[np.ndarray, ...]:
        """The rows' arguments of :func:`compiled.sgd_rows` (and ``sgd_batches``): the first
        activations ``h``, the labels for classification or the float32 targets ``(rows,
        outputs)`` for regression (the other one empty), the route weights (empty if none)."""
        inputs = np.ascontiguousarray(h.numpy(), dtype=np.float32)
        route_weights = _NO_WEIGHTS if weights is None else weights.numpy()
        if self.task_type == "classification":
            labels = np.ascontiguousarray(y.numpy(), dtype=np.int64)
            return inputs, labels, _NO_TARGETS, route_weights
        targets = np.ascontiguousarray(y.numpy().reshape(h.shape[0], -1), dtype=np.float32)
        return inputs, _NO_LABELS, targets, route_weights

    def _update_rows_in_order(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        routes: np.ndarray,
        weights: torch.Tensor | None,
    ) -> bool:
        """:meth:`update` on consecutive batches of ``module_batch_size`` (``x``, ``y``,
        ``routes`` and ``weights`` their rows one after the other) through the per-row kernel,
        with the host's work done once for all of them: the by-hand conditions, the stack rows
        and index tensors (:meth:`RowPlan.batches`), the check of the stacks, and on the CPU
        one compiled call for all the updates (:func:`compiled.sgd_batches`); the same numbers
        as one :meth:`update` after the other. Returns ``False``, having done nothing, where
        :meth:`update` would not take the per-row path or an update hook could change the
        network between two updates."""
        lr = self._by_hand_lr()
        size = self.module_batch_size
        if lr is None or not rows.serves(size) or self._update_hooks:
            return False
        plan = self._row_plan
        batches = plan.batches(routes, size, self.device)
        if batches is None:
            return False
        stacks = plan.stacks()
        arrays = self._compiled_arrays(stacks)
        if arrays is not None:
            try:
                with torch.inference_mode():
                    losses = self._compiled_arrival(arrays, x, y, batches, weights, lr)
            finally:
                compiled.bump_versions(stacks)
            for loss in losses.tolist():
                self._finite_loss(loss)
                self._updated()
            return True
        group = self.optimizer.param_groups[0]
        parts = [None] * len(batches) if weights is None else weights.split(size)
        with torch.inference_mode():
            for part_x, part_y, batch, part_weights in zip(
                x.split(size), y.split(size), batches, parts, strict=True
            ):
                self._row_update(stacks, None, part_x, part_y, batch, lr, part_weights)
                self._updated()
                lr = float(group["lr"])  # annealed by `_updated`
        return True

    def _compiled_arrival(
        self,
        arrays: compiled.StackArrays,
        x: torch.Tensor,
        y: torch.Tensor,
        batches: list[RowBatch],
        weights: torch.Tensor | None,
        lr: float,
    ) -> np.ndarray:
        """The updates of :meth:`_update_rows_in_order` in one compiled call; returns their
        losses (NaN after the first that is not finite, whose update and the later ones were
        not made). Each update's learning rate is the one :meth:`_updated` sets after the
        update before it."""
        size, count = self.module_batch_size, len(batches)
        lrs = np.full(count, lr)
        if self.module_lr_anneal_every is not None:
            for batch in range(1, count):
                trained = (self.num_updates + batch) * size
                lrs[batch] = annealed_lr(self.module_lr, trained, self.module_lr_anneal_every)
        if self._identity_embedding:
            h = self.embed(x)
        else:  # batch by batch, as one update after the other embeds them
            h = torch.cat([self.embed(part) for part in x.split(size)])
        members = np.stack([batch.members for batch in batches])
        return compiled.sgd_batches(*arrays, members, *self._compiled_rows(h, y, weights), lrs)

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
        kernel = self._kernel
        if not all(
            kernel.is_current(record, stamp)
            for record, stamp in zip(graph.records, graph.stamps, strict=True)
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
        padded, layout, records = graph.padded, graph.layout, graph.records
        by_hand = graph.by_hand
        graph.discard()
        if by_hand:
            with torch.no_grad():
                value = self._step_by_hand(padded, layout, y, records, self._by_hand_lr(), weights)
            self._updated()
            return value
        with torch.enable_grad():
            outputs = padded.index_select(0, layout.tensor("slots", padded.device))
            loss = _weighted_mean(self.per_sample_loss(outputs, y), weights)
        return self._step(loss, records, *_trained_rows(routes, task, weights))

    # ------------------------------------------------------------------ autograd on leaves

    def _step(
        self,
        loss: torch.Tensor,
        leaves: list[Leaf],
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
                for leaf in leaves:
                    if leaf.index is None:  # a prefix of the stack
                        leaf.stack_weight[: leaf.weight.shape[0]].add_(leaf.weight.grad, alpha=-lr)
                        leaf.stack_bias[: leaf.bias.shape[0]].add_(leaf.bias.grad, alpha=-lr)
                    else:
                        leaf.stack_weight.index_add_(0, leaf.index, leaf.weight.grad, alpha=-lr)
                        leaf.stack_bias.index_add_(0, leaf.index, leaf.bias.grad, alpha=-lr)
        else:
            self._set_module_gradients(leaves, routes_host, task)
        if optimizer_needed:
            self.optimizer.step()
        self._updated()
        return value

    def _set_module_gradients(
        self, leaves: list[Leaf], routes: np.ndarray, task: torch.Tensor
    ) -> None:
        """Sum the leaves' gradients per bank and hand them to the routed members only."""
        sums: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for leaf in leaves:
                if leaf.bank not in sums:
                    sums[leaf.bank] = (
                        torch.zeros_like(leaf.stack_weight),
                        torch.zeros_like(leaf.stack_bias),
                    )
                grad_weight, grad_bias = sums[leaf.bank]
                if leaf.index is None:  # a prefix of the stack
                    grad_weight[: leaf.weight.shape[0]].add_(leaf.weight.grad)
                    grad_bias[: leaf.bias.shape[0]].add_(leaf.bias.grad)
                else:
                    grad_weight.index_add_(0, leaf.index, leaf.weight.grad)
                    grad_bias.index_add_(0, leaf.index, leaf.bias.grad)
        task_host = None if self._readout_bank is None else host_indices(task)
        for bank, (grad_weight, grad_bias) in sums.items():
            linears = self._kernel.banks[bank]
            for member in self._bank_used(bank, routes, task_host).tolist():
                linears[member].weight.grad = grad_weight[member].t()
                linears[member].bias.grad = grad_bias[member]

    # ------------------------------------------------------------------ by hand

    def _step_by_hand(
        self,
        last: torch.Tensor,
        layout: GroupLayout | None,
        y: torch.Tensor,
        tape: list[Product] | list[RowProduct],
        lr: float,
        weights: torch.Tensor | None = None,
    ) -> float:
        """The plain-SGD module update of a chain computed without autograd (its ``tape``),
        ending in ``last``: the padded batch of ``layout`` for the grouped kernel's
        :class:`~routing_env.network.kernel.Product` tape, the outputs ``(batch, 1, outputs)``
        in batch order (``layout`` ``None``) for the per-row kernel's
        :class:`~routing_env.network.rows.RowProduct` tape.

        The backward pass is written out: the mean loss's gradient with respect to the outputs
        (cross-entropy: ``(softmax - one_hot) / n``; mean squared error:
        ``2 (outputs - y) / (n * outputs)``; each row times its route's weight when
        ``weights`` are given, the gradient of :meth:`update`'s weighted mean), then the
        routed layers depth by depth from the last (:func:`backward_step`,
        :func:`routing_env.network.rows.backward`), each depth's step ``W -= lr * x^T g``
        fused into the product that computes its gradient. It spares the autograd graph's
        recording and its engine, which cost more than the products on batches of this size.
        Runs without autograd (the caller's ``no_grad`` or inference mode); returns the loss,
        and the caller counts the update.
        """
        if layout is None:
            value, grad, scale = self._output_gradient(last, y, weights)
            rows.backward(tape, grad, lr * scale)
            return value
        slots = layout.tensor("slots", last.device)
        value, grad, scale = self._output_gradient(last.index_select(0, slots), y, weights)
        grad = torch.zeros_like(last).index_copy_(0, slots, grad)
        for product in reversed(tape):
            grad = backward_step(product, grad, lr * scale)
        return value

    def _output_gradient(
        self, outputs: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None
    ) -> tuple[float, torch.Tensor, float]:
        """The mean loss of ``outputs`` (``(batch, outputs)``, or ``(batch, 1, outputs)`` from
        the per-row kernel; ``FloatingPointError`` unless finite) and its gradient with respect
        to them, as ``(loss, grad, scale)`` with the gradient ``scale * grad`` (see
        :meth:`_step_by_hand`): the backward pass is linear in ``grad``, so the steps take
        ``scale`` into their learning rate instead of a pass over ``grad``."""
        batch_shape = outputs.shape[:-1]
        if self.task_type == "classification":
            # Cross-entropy as `per_sample_loss` computes it: minus log_softmax at the label.
            log_p = torch.log_softmax(outputs, -1)
            labels = y.view(*batch_shape, 1)
            picked = log_p.gather(-1, labels)
            total = picked.sum() if weights is None else torch.dot(picked.view(-1), weights)
            value = self._finite_loss(-total.item() / outputs.shape[0])
            grad = log_p.exp_().scatter_(-1, labels, -1.0, reduce="add")
            scale = 1.0 / outputs.shape[0]
        else:
            losses = self.per_sample_loss(outputs.view(outputs.shape[0], -1), y)
            value = self._finite_loss(_weighted_mean(losses, weights))
            grad = outputs - y.reshape(outputs.shape)
            scale = 2.0 / outputs.numel()
        if weights is not None:
            grad.mul_(weights.view(*batch_shape, 1))
        return value, grad, scale

    # ------------------------------------------------------------------ conditions, hooks

    def _by_hand_lr(self) -> float | None:
        """The learning rate when the module update is computed by :meth:`_step_by_hand`:
        layered routing, nothing trained outside the routed layers, no layer that behaves
        differently in training, and this network's own plain SGD; else ``None``."""
        if self.routing != "layered" or self._mode_sensitive or self._trained_outside_banks():
            return None
        return self._plain_sgd_lr()

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

    def _trained_outside_banks(self) -> bool:
        """Whether a parameter outside the stacked banks (trunk, projection, shared readout)
        is trained."""
        return any(p.requires_grad for p in self._outside_banks)

    def _finite_loss(self, loss: torch.Tensor | float) -> float:
        """The loss as a number; ``FloatingPointError`` if it is not finite."""
        value = loss if isinstance(loss, float) else loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"module loss is {value} at update {self.num_updates + 1}; "
                f"lower module_lr (now {self.module_lr}) or check the data for extreme values"
            )
        return value

    def _updated(self) -> None:
        """Count an update, anneal the learning rate for the next one (``001`` section 4, with
        ``module_lr_anneal_every``) and tell the update hooks."""
        self.num_updates += 1
        if self.module_lr_anneal_every is not None:
            trained = self.num_updates * self.module_batch_size
            lr = annealed_lr(self.module_lr, trained, self.module_lr_anneal_every)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
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


# What :func:`compiled.sgd_rows` takes for an absent argument (no route weights; the labels of
# a regression, the targets of a classification).
_NO_WEIGHTS = np.empty(0, dtype=np.float32)
_NO_LABELS = np.empty(0, dtype=np.int64)
_NO_TARGETS = np.empty((0, 0), dtype=np.float32)


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


def _optimizer_has_hooks(optimizer: torch.optim.Optimizer) -> bool:
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or optimizer_module._global_optimizer_pre_hooks
        or optimizer_module._global_optimizer_post_hooks
    )
