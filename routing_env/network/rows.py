"""The per-row kernel: a small batch through its modules row by row, and its update by hand.

The grouped kernel (:mod:`routing_env.network.kernel`) sorts a batch into groups by module and
multiplies padded chunks; its fixed costs (the grouping on the host, the gathers into and out
of padded order, a few dozen small operations per depth) are paid once per product however
few the rows. On the batch of a module update at the default ``module_batch_size`` (16
routes) they are most of the update. Here every row reads its own module's weights instead:
``W.index_select(0, index)`` gives a ``(rows, in, out)`` stack and one ``baddbmm`` multiplies
each row by its module, in batch order, without grouping. The backward pass of the update is
written out on the same rows (:func:`backward`): the input gradient through the gathered
weights, and the plain-SGD step ``W -= lr * x^T g`` as one ``index_add_`` of the rows' outer
products into the stacked weights (rows of one module add up there, as the grouped product's
sum over a chunk does).

The identity slot of a square bank (PASS and ended routes, ``-1``) is a stack row like the
others (``x @ I + 0`` is ``x``). Its rows skip the ReLU through a per-row floor of ``-inf``
instead of ``0`` where their input may be negative (rows that took the slot at every depth so
far, whose input is the first activation; the others carry a ReLU's output already), and their
outer products are scaled by ``0`` in the step, so the slot stays ``I``
(:class:`~routing_env.network.kernel.RowStack`).

The gathered weights grow with ``rows * in * out``, the grouping's costs do not: the per-row
kernel serves batches of at most :data:`MAX_ROWS` rows (:func:`serves`). The module update and
the routing pass recorded for it (:class:`~routing_env.network.graph.RouteGraph`) choose the
kernel by the batch size alone, so their numbers agree bit for bit.

On the CPU (float32 stacks) the update of such a batch is compiled instead
(:mod:`routing_env.network.compiled`: the same rows, one call, no gathered copies), and the
routing pass records no graph for it; the operations here are the update on other devices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from routing_env.network.kernel import GroupedBanks, RowStack

#: The largest batch the per-row kernel serves. On DigitsMTL's network (64 x 64 modules)
#: ``benchmarks/module_update.py`` measured the grouped kernel 1.7-2.7x slower from 4 to 32
#: rows, 1.2-1.3x at 48 and 64, and faster from 96 on (0.9x; 0.2x at 128).
MAX_ROWS = 64


def serves(rows: int) -> bool:
    """Whether a batch of ``rows`` rows goes through the per-row kernel."""
    return 0 < rows <= MAX_ROWS


class RowProduct(NamedTuple):
    """One depth computed row by row, kept for :func:`backward`: the bank's
    :class:`~routing_env.network.kernel.RowStack` and index, each row's stack row ``index``,
    the gathered weights ``(rows, in, out)``, the inputs ``(rows, 1, in)``, the outputs
    ``(rows, 1, out)`` after ReLU (``None`` without ReLU), whether some row took the identity
    slot, the rows that took it at every depth so far (``None`` if none did), the ReLU's floor
    of each row (``None`` where the ReLU had none) and whether the input needs a gradient (not
    at a chain's first depth)."""

    stack: RowStack
    bank: int
    index: torch.Tensor
    weight: torch.Tensor
    inputs: torch.Tensor
    activations: torch.Tensor | None
    identity: bool
    raw: np.ndarray | None
    floor: torch.Tensor | None
    input_grad: bool

    # The graph that records a routing pass stamps its records with their stacks' versions.
    @property
    def stack_weight(self) -> torch.Tensor:
        """The stacked weight this depth read."""
        return self.stack.weight

    @property
    def stack_bias(self) -> torch.Tensor:
        """The stacked bias this depth read (viewed ``(n, 1, out)``)."""
        return self.stack.bias


class RowBatch(NamedTuple):
    """One batch of layered routes as stack rows, ready for :func:`chain`: ``members``
    ``(depth, rows)`` (each row's stack row at every depth), their ``index`` tensors per depth
    on the device, and per depth whether some row takes the identity slot."""

    members: np.ndarray
    index: tuple[torch.Tensor, ...]
    identity: list[bool]


class RowPlan:
    """Layered routes as stack rows: depth ``d`` in bank ``banks[d]`` of ``kernel``.

    Args:
        kernel: the grouped kernel whose stacks the rows read.
        banks: the bank of each depth.
    """

    def __init__(self, kernel: GroupedBanks, banks: list[int]) -> None:
        self.kernel = kernel
        self.banks = banks
        # Per depth: the largest valid action (PASS, the identity slot's index, where the bank
        # has the identity slot), and the identity slot (-1 where there is none).
        counts = [len(kernel.banks[bank]) for bank in banks]
        square = [kernel.identity[bank] for bank in banks]
        self._largest = [
            count if identity else count - 1 for count, identity in zip(counts, square, strict=True)
        ]
        self._identity_slots = [
            count if identity else -1 for count, identity in zip(counts, square, strict=True)
        ]

    def members(self, routes: np.ndarray) -> tuple[np.ndarray, list[bool]] | None:
        """Each row's stack row at every depth of ``routes`` (``(rows, depth)``, padded with
        ``-1``), as a contiguous ``(depth, rows)`` array (its module, or the identity slot for
        PASS and ``-1``), and per depth whether some row takes the identity slot; ``None`` when
        some row has no stack row (what :meth:`GroupedBanks.groups` decides, here for all
        depths at once)."""
        # PASS is the action after the modules: the identity slot's index already.
        highs, lows = routes.max(0).tolist(), routes.min(0).tolist()
        members = routes.T.copy()
        identity = []
        for depth, (high, low, largest, slot) in enumerate(
            zip(highs, lows, self._largest, self._identity_slots, strict=True)
        ):
            if high > largest or (low < 0 and slot < 0):
                return None
            if low < 0:  # an ended route (-1) goes through the identity slot
                row = members[depth]
                row[row < 0] = slot
            identity.append(high == slot or low < 0)
        return members, identity

    def stacks(self) -> list[RowStack]:
        """Each depth's :class:`~routing_env.network.kernel.RowStack`, checked against the
        parameters (made again if they were replaced). Updates through them keep them
        current: they step the stacks in place."""
        return [self.kernel.row_stack(bank) for bank in self.banks]

    def batches(self, routes: np.ndarray, size: int, device: torch.device) -> list[RowBatch] | None:
        """``routes`` (``(count * size, depth)``) as ``count`` consecutive batches of ``size``
        routes, each a :class:`RowBatch` for :func:`chain`; ``None`` when some route has no
        stack row (:meth:`members`). The host's work (the stack rows, the identity flags, the
        index tensors) is done once for all the batches: a module update at the default batch
        of 16 routes is short enough for it to count."""
        found = self.members(routes)
        if found is None:
            return None
        members = found[0]
        depth, total = members.shape
        count = total // size
        slots = np.array(self._identity_slots).reshape(depth, 1, 1)
        identity = (members.reshape(depth, count, size) == slots).any(axis=2).T.tolist()
        index = torch.from_numpy(members)
        if device.type != "cpu":
            index = index.to(device)
        # Per depth the batches' index views, then per batch its depths'.
        per_depth = (rows.unbind(0) for rows in index.view(depth, count, size).unbind(0))
        views = zip(*per_depth, strict=True)
        # Each batch's members contiguous, the layout the compiled update is compiled for.
        per_batch = members.reshape(depth, count, size).transpose(1, 0, 2).copy()
        return [
            RowBatch(per_batch[batch], index, identity[batch]) for batch, index in enumerate(views)
        ]


def product(
    stack: RowStack,
    bank: int,
    relu: bool,
    h: torch.Tensor,
    members: np.ndarray,
    index: torch.Tensor,
    identity: bool,
    tape: list[RowProduct],
) -> torch.Tensor:
    """Row ``i`` of ``h`` (``(rows, 1, in)``) through stack row ``members[i]`` (``index`` on
    the device) of ``stack`` (bank ``bank``, where some row takes the identity slot if
    ``identity``) and its ReLU, without autograd; appends the depth's :class:`RowProduct` to
    ``tape`` and returns ``(rows, 1, out)`` in batch order.

    The identity slot's rows skip the ReLU. Only the rows that took it at every depth so far
    need the floor for that: the others carry a module's output, after its ReLU, which the
    ReLU leaves as it is (and the gradient it holds back there, where that output is 0, the
    module's own ReLU holds back too).
    """
    raw = None
    if identity:
        raw = members == stack.weight.shape[0] - 1  # the identity slot comes last
        if tape:
            previous = tape[-1].raw
            raw = None if previous is None else raw & previous
        if raw is not None and not raw.any():
            raw = None
    weight = stack.weight.index_select(0, index)
    out = torch.baddbmm(stack.bias.index_select(0, index), h, weight)
    activations = floor = None
    if relu:
        if raw is not None and stack.floor is not None:
            floor = stack.floor.index_select(0, index)
            out = torch.maximum(out, floor)
        else:
            out = out.relu_()
        activations = out
    tape.append(
        RowProduct(stack, bank, index, weight, h, activations, identity, raw, floor, bool(tape))
    )
    return out


def record_depth(
    kernel: GroupedBanks,
    bank: int,
    h: torch.Tensor,
    members: np.ndarray,
    tape: list[RowProduct],
) -> torch.Tensor:
    """One depth of a routing pass recorded for the update (``h`` ``(rows, in)``, ``members``
    the kernel's groups there), computed as :func:`chain` computes it, without autograd;
    returns ``(rows, 1, out)`` in batch order."""
    # A copy of the groups, which may be a view of the caller's actions; contiguous inputs, as
    # the outputs of the previous depth are in `chain`.
    index = torch.from_numpy(np.array(members, dtype=np.int64)).to(h.device)
    identity = kernel.identity[bank] and int(members.max()) == len(kernel.banks[bank])
    stack = kernel.row_stack(bank)
    h = h.unsqueeze(1).contiguous()
    return product(stack, bank, kernel.relu[bank], h, members, index, identity, tape)


def chain(
    plan: RowPlan,
    stacks: list[RowStack],
    h: torch.Tensor,
    batch: RowBatch,
    tape: list[RowProduct],
) -> torch.Tensor:
    """Whole routes row by row (``batch`` from :meth:`RowPlan.batches`, through ``stacks``
    from :meth:`RowPlan.stacks`) from their first activations ``h`` ``(rows, in)``, without
    autograd, recording each depth on ``tape``; returns the last depth's outputs ``(rows, 1,
    out)`` in batch order."""
    relu = plan.kernel.relu
    h = h.unsqueeze(1)
    for bank, stack, bank_members, bank_index, bank_identity in zip(
        plan.banks, stacks, batch.members, batch.index, batch.identity, strict=True
    ):
        h = product(stack, bank, relu[bank], h, bank_members, bank_index, bank_identity, tape)
    return h


def backward(tape: list[RowProduct], grad: torch.Tensor, lr: float) -> None:
    """The backward pass of a chain recorded on ``tape`` from ``grad`` (``(rows, 1, out)``, the
    gradient of its outputs), with each depth's plain-SGD step ``W -= lr * x^T g`` on the
    stacked weights; the arithmetic of autograd through :func:`product`."""
    for record in reversed(tape):
        stack, _, index, weight, inputs, activations, identity, _, floor, input_grad = record
        if activations is not None:
            if floor is not None:  # the identity's rows pass their gradient whatever its sign
                activations = activations - floor
            grad = torch.ops.aten.threshold_backward(grad, activations, 0)
        # The input gradient reads the gathered weights, a copy the step leaves alone.
        grad_input = torch.bmm(grad, weight.transpose(1, 2)) if input_grad else None
        step = grad
        if identity and stack.keep is not None:
            step = grad * stack.keep.index_select(0, index)
        # The rows' outer products x^T g, written over the gathered weights (read for the last
        # time above): the update's largest buffer, still in cache, serves twice.
        outer = torch.mul(inputs.transpose(1, 2), step, out=weight)
        stack.weight.index_add_(0, index, outer, alpha=-lr)
        stack.bias.index_add_(0, index, step, alpha=-lr)
        if grad_input is None:
            return
        grad = grad_input
