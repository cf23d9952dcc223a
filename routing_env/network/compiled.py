"""The per-row module update compiled: forward, loss, backward and SGD step in one call (CPU).

At the default module batch of 16 routes the update of :mod:`routing_env.network.rows` is about
thirty PyTorch operations per batch, each a few microseconds of dispatch around a small
product, and three of them per depth copy every row's module weights (the gather, the outer
products written over it, their ``index_add_``). :func:`sgd_rows` does the same update in one
compiled loop over the rows, reading each row's module in the stack where it lies:

* forward (``001`` Algorithm 2, the route's modules applied in turn): ``h <- relu(h W_m + b_m)``
  per depth, the identity slot (PASS and ended routes) passing ``h`` on unchanged; its ReLU is
  skipped while the row has taken the slot at every depth so far (its input is the first
  activation, which may be negative), as the stacks' floor of ``-inf`` does in
  :func:`routing_env.network.rows.product`;
* the mean loss (cross-entropy, or mean squared error for regression), each route's loss times
  its weight (``000`` eq. 7.4's squashing), and its gradient with respect to the outputs;
* backward depth by depth from the last: the ReLU's mask, the input gradient through the
  module's weights as they were before this depth's step, then the plain-SGD step
  ``W_m <- W_m - lr x^T g``, ``b_m <- b_m - lr g`` row after row, so the rows of one module add
  up in batch order as ``index_add_`` adds them.

The arithmetic is that of :func:`routing_env.network.trainer.reference_update` to float
rounding; the single and the vector env both update through it, so they still end with the
same parameters bit for bit. The compiled sums may be reassociated (to use SIMD), never
assumed free of NaN or infinity: a diverged loss is returned before any parameter is touched.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch

from routing_env.network.kernel import RowStack

# Reassociation lets the input gradient's dot products use SIMD; no flag that assumes finite
# values, since the floor of the identity slot is -inf and a diverged loss must be seen.
_FLAGS = {"reassoc", "contract"}


class StackArrays(NamedTuple):
    """The stacks of a route's depths as NumPy views sharing their memory (steps through them
    are the parameters' steps): per depth the weight ``(n, in, out)``, the bias ``(n, out)``,
    the identity slot (``-1`` where the bank has none) and whether a ReLU follows."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    slots: np.ndarray
    relu: np.ndarray


def stack_arrays(stacks: list[RowStack], relu: list[bool]) -> StackArrays:
    """The NumPy views of ``stacks`` (one per depth, CPU) for :func:`sgd_rows`."""
    weights = tuple(stack.weight.detach().numpy() for stack in stacks)
    biases = tuple(stack.bias.detach().numpy().reshape(stack.bias.shape[0], -1) for stack in stacks)
    slots = np.array([identity_slot(stack) for stack in stacks], dtype=np.int64)
    return StackArrays(weights, biases, slots, np.array(relu, dtype=np.bool_))


def identity_slot(stack: RowStack) -> int:
    """The stack row of ``stack``'s identity slot (its last), ``-1`` where it has none."""
    return -1 if stack.keep is None else stack.weight.shape[0] - 1


def bump_versions(stacks: list[RowStack]) -> None:
    """Mark ``stacks`` as changed for PyTorch (their version counters), as an in-place
    operation of its own would: a routing pass recorded before the steps, or an autograd
    graph that saved the weights, then knows that they are stale."""
    with torch.no_grad():
        for stack in {id(stack.weight): stack for stack in stacks}.values():
            stack.weight.view(-1)[:0].zero_()
            stack.bias.view(-1)[:0].zero_()


def supported(stacks: list[RowStack]) -> bool:
    """Whether :func:`sgd_rows` can update through ``stacks``: float32 on the CPU,
    contiguous."""
    tensors = [stack.weight for stack in stacks] + [stack.bias for stack in stacks]
    return all(
        tensor.device.type == "cpu" and tensor.dtype == torch.float32 and tensor.is_contiguous()
        for tensor in tensors
    )


@numba.njit(cache=True, fastmath=_FLAGS)
def sgd_rows(
    weights: tuple[np.ndarray, ...],
    biases: tuple[np.ndarray, ...],
    slots: np.ndarray,
    relu: np.ndarray,
    members: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    targets: np.ndarray,
    route_weights: np.ndarray,
    lr: float,
) -> float:
    """One plain-SGD update of a batch of layered routes (module docstring), in place on the
    stacks; returns the batch's mean (weighted) loss, with the parameters untouched when it is
    not finite.

    ``members`` ``(depth, rows)``: each row's stack row per depth (the identity slot for PASS
    and ended routes); ``x`` ``(rows, in)``: the first activations; ``targets``: the labels
    ``(rows,)`` (classification) or the targets ``(rows, outputs)``; ``route_weights``:
    ``(rows,)``, or empty for weight 1 everywhere.
    """
    depth, rows = members.shape
    classification = labels.size > 0
    outputs = weights[depth - 1].shape[2]
    # Nothing is indexed unchecked below: bad shapes or labels raise before any step.
    if x.shape[0] != rows or x.shape[1] != weights[0].shape[1]:
        raise ValueError("the inputs do not match the routes or the first layer's inputs")
    if classification and (labels.shape[0] != rows or labels.min() < 0 or labels.max() >= outputs):
        raise ValueError("a label is outside the network's outputs, or labels and routes differ")
    if not classification and (targets.shape[0] != rows or targets.shape[1] != outputs):
        raise ValueError("the regression targets do not match the routes and the outputs")
    if route_weights.size and route_weights.shape[0] != rows:
        raise ValueError("the route weights do not match the routes")
    zero = np.float32(0.0)
    # Forward: each depth's outputs kept for the backward pass.
    outs = [x]
    raw = np.ones((depth, rows), dtype=np.bool_)  # took the identity at every depth so far
    for d in range(depth):
        weight, bias, h = weights[d], biases[d], outs[d]
        out = np.empty((rows, weight.shape[2]), dtype=np.float32)
        for i in range(rows):
            member = members[d, i]
            if d > 0:
                raw[d, i] = raw[d - 1, i]
            row = out[i]
            if member == slots[d]:
                row[:] = h[i]
                if relu[d] and not raw[d, i]:
                    for j in range(row.shape[0]):
                        row[j] = max(row[j], zero)
                continue
            raw[d, i] = False
            _through_module(weight, bias, member, relu[d], h[i], row)
        outs.append(out)

    # The mean loss and its gradient with respect to the outputs (without the 1 / n).
    last = outs[depth]
    grad = np.empty_like(last)
    total = 0.0
    for i in range(rows):
        weight_i = np.float32(1.0) if route_weights.size == 0 else route_weights[i]
        if classification:
            label = labels[i]
            top = last[i].max()
            norm = np.float32(0.0)
            for j in range(outputs):
                norm += np.exp(last[i, j] - top)
            log_norm = top + np.log(norm)
            total -= weight_i * (last[i, label] - log_norm)
            for j in range(outputs):
                grad[i, j] = np.exp(last[i, j] - log_norm)
            grad[i, label] -= np.float32(1.0)
        else:
            row_loss = 0.0
            for j in range(outputs):
                diff = last[i, j] - targets[i, j]
                row_loss += diff * diff
                grad[i, j] = diff
            total += weight_i * row_loss / outputs
        if route_weights.size:
            for j in range(outputs):
                grad[i, j] *= weight_i
    loss = total / rows
    if not np.isfinite(loss):
        return loss
    # d mean / d outputs: 1 / n (cross-entropy), 2 / (n * outputs) (mean squared error).
    step = np.float32(lr / rows if classification else 2.0 * lr / (rows * outputs))

    # Backward, depth by depth from the last.
    for d in range(depth - 1, -1, -1):
        weight, bias, h, out = weights[d], biases[d], outs[d], outs[d + 1]
        if relu[d]:
            for i in range(rows):
                if members[d, i] == slots[d] and raw[d, i]:
                    continue  # the ReLU was skipped
                for j in range(out.shape[1]):
                    if out[i, j] <= zero:
                        grad[i, j] = zero
        # The input gradient reads the weights before this depth's step.
        grad_input = np.empty((rows, weight.shape[1] if d > 0 else 0), dtype=np.float32)
        if d > 0:
            for i in range(rows):
                member = members[d, i]
                if member == slots[d]:
                    grad_input[i] = grad[i]
                    continue
                for k in range(weight.shape[1]):
                    module_row = weight[member, k]
                    acc = zero
                    for j in range(grad.shape[1]):
                        acc += module_row[j] * grad[i, j]
                    grad_input[i, k] = acc
        for i in range(rows):
            member = members[d, i]
            if member == slots[d]:
                continue  # the identity slot stays I
            for k in range(weight.shape[1]):
                scaled = -step * h[i, k]
                module_row = weight[member, k]
                for j in range(grad.shape[1]):
                    module_row[j] += scaled * grad[i, j]
            bias_row = bias[member]
            for j in range(grad.shape[1]):
                bias_row[j] -= step * grad[i, j]
        grad = grad_input
    return loss


@numba.njit(cache=True, fastmath=_FLAGS)
def sgd_batches(
    weights: tuple[np.ndarray, ...],
    biases: tuple[np.ndarray, ...],
    slots: np.ndarray,
    relu: np.ndarray,
    members: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    targets: np.ndarray,
    route_weights: np.ndarray,
    lrs: np.ndarray,
) -> np.ndarray:
    """:func:`sgd_rows` on consecutive batches, one after the other (the updates that one
    arrival of routes makes): ``members`` ``(count, depth, size)``, the batches' rows one after
    the other in ``x``, ``labels``, ``targets`` and ``route_weights`` (or these empty, as
    there), batch ``b`` stepped with ``lrs[b]``. Returns each batch's loss; after the first
    that is not finite (that batch and the later ones untouched) the rest are NaN."""
    count, _, size = members.shape
    losses = np.full(count, np.nan)
    for batch in range(count):
        rows = slice(batch * size, (batch + 1) * size)
        loss = sgd_rows(
            weights,
            biases,
            slots,
            relu,
            members[batch],
            np.ascontiguousarray(x[rows]),
            np.ascontiguousarray(labels[rows]) if labels.size else labels,
            np.ascontiguousarray(targets[rows]) if targets.size else targets,
            np.ascontiguousarray(route_weights[rows]) if route_weights.size else route_weights,
            lrs[batch],
        )
        losses[batch] = loss
        if not np.isfinite(loss):
            break
    return losses


def forward(stack: RowStack, relu: bool, h: torch.Tensor, members: np.ndarray) -> torch.Tensor:
    """Row ``i`` of ``h`` ``(rows, in)`` through stack row ``members[i]`` of ``stack`` (and
    its ReLU; the identity slot passes the row on unchanged), without autograd: a routing
    pass's depth on a small batch, where the grouped kernel's fixed costs dominate. ``stack``
    and ``h``: float32 on the CPU (:func:`supported`)."""
    out = forward_rows(
        stack.weight.detach().numpy(),
        stack.bias.detach().numpy().reshape(stack.bias.shape[0], -1),
        np.ascontiguousarray(members, dtype=np.int64),
        identity_slot(stack),
        relu,
        np.ascontiguousarray(h.detach().numpy(), dtype=np.float32),
    )
    return torch.from_numpy(out)


@numba.njit(cache=True, fastmath=_FLAGS)
def forward_rows(
    weight: np.ndarray,
    bias: np.ndarray,
    members: np.ndarray,
    slot: int,
    relu: bool,
    h: np.ndarray,
) -> np.ndarray:
    """:func:`forward` on the arrays: weight ``(n, in, out)``, bias ``(n, out)``, the identity
    slot ``slot`` (``-1`` where there is none); returns ``(rows, out)``."""
    rows = h.shape[0]
    if members.shape[0] != rows or h.shape[1] != weight.shape[1]:
        raise ValueError("the activations do not match the actions or the layer's inputs")
    if rows and (members.min() < 0 or members.max() >= weight.shape[0]):
        raise ValueError("an action is outside the layer's stack")
    out = np.empty((rows, weight.shape[2]), dtype=np.float32)
    for i in range(rows):
        member = members[i]
        row = out[i]
        if member == slot:
            row[:] = h[i]
            continue
        _through_module(weight, bias, member, relu, h[i], row)
    return out


@numba.njit(cache=True, fastmath=_FLAGS)
def _through_module(
    weight: np.ndarray,
    bias: np.ndarray,
    member: int,
    relu: bool,
    source: np.ndarray,
    row: np.ndarray,
) -> None:
    """``row <- source W_member + b_member`` (and its ReLU): one row through one module of a
    stack, accumulated over the inputs so that the inner loop runs along a weight row."""
    row[:] = bias[member]
    for k in range(weight.shape[1]):
        value = source[k]
        module_row = weight[member, k]
        for j in range(row.shape[0]):
            row[j] += value * module_row[j]
    if relu:
        zero = np.float32(0.0)
        for j in range(row.shape[0]):
            row[j] = max(row[j], zero)
