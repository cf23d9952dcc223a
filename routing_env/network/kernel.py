"""The grouped kernel: banks of same-shaped linears, stacked, and their batched products.

The weights of each bank (a routed layer, or the per-task readout heads) live in one stacked
tensor, transposed to ``(num_modules, in, out)``; every member's ``weight`` and ``bias``
parameters are views of it, so optimizer steps and ``load_state_dict`` write through and the
stack is never copied. A bank whose input and output sizes match has one more slot, the
identity, which PASS, stop and ended routes (``-1``) go through: its chunks come last and pass
unchanged, without a product (``x @ I + 0`` is ``x``) and without ReLU.

A batch is applied in one batched matrix product: rows are grouped by member
(:class:`GroupLayout`), each group is cut into chunks (one per group, as long as the largest
group's size, while that at most doubles the rows; otherwise of the mean group size), the chunks
are padded to that size, multiplied by their member's weights in one ``baddbmm``, and gathered
back into batch order. The work thus stays within a small factor of the unrouted product however
the routes are spread, and the number of kernels does not grow with the number of modules.
Whole routes (:meth:`GroupedBanks.chain`) stay in padded order from one depth to the next: one
gather per depth.

What a product records, for the module update that follows it (``001`` Algorithm 2 step 3), is
the caller's choice, passed as an argument: ``leaves`` collects a :class:`Leaf` per product
(the weights read, as autograd leaves whose gradients the update applies to the stack),
``tape`` a :class:`Product` per product (what :func:`backward_step` needs to write the backward
pass out, without autograd).
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

LAYOUT_CACHE = 16  # groupings kept by GroupedBanks.layout

NumpyView = tuple[np.ndarray, np.ndarray, bool]


class Leaf(NamedTuple):
    """The weight and bias one batched product read, as leaves of the update's autograd graph:
    the stacked weight and bias they come from and their bank, the stack rows of the product's
    chunks (``None`` when they are a prefix of the stack), and the leaves ``(chunks, in, out)``
    and ``(chunks, out)``, whose gradients the update applies to those rows."""

    stack_weight: torch.Tensor
    stack_bias: torch.Tensor
    bank: int
    index: torch.Tensor | None
    weight: torch.Tensor
    bias: torch.Tensor


class Product(NamedTuple):
    """One depth of a chain computed for the update by hand (:func:`backward_step`): the stacked
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


class RowStack(NamedTuple):
    """A bank's stacks as the per-row kernel reads them: the stacked weight ``(n, in, out)``,
    the stacked bias viewed as ``(n, 1, out)``, and per slot ``(n, 1, 1)`` the floor of the
    ReLU (``0``; ``-inf`` at the identity slot, which skips it; ``None`` without ReLU or
    identity slot) and the factor of the slot's step (``1``; ``0`` at the identity slot, which
    stays ``I``; ``None`` without identity slot)."""

    weight: torch.Tensor
    bias: torch.Tensor
    floor: torch.Tensor | None
    keep: torch.Tensor | None


class GroupedBanks:
    """Banks of same-shaped linears computed together, each stored as one stacked tensor.

    Args:
        banks: the members of each bank, ``nn.Linear`` of one shape per bank.
        relu: per bank, whether a ReLU follows its members.
        identity: per bank, whether it has the identity slot (input and output sizes match).

    The parameters are the truth: if any was given new storage (a parameter replaced,
    ``load_state_dict(assign=True)``, a copy), its bank is stacked again from them on first use.
    """

    def __init__(
        self, banks: list[list[nn.Linear]], relu: list[bool], identity: list[bool]
    ) -> None:
        self.banks = banks
        self.relu = relu
        self.identity = identity
        # Per bank: weight, bias, the parameters' data pointers, what the per-row kernel reads.
        self._stacks: list[tuple[torch.Tensor, torch.Tensor, list[int], RowStack] | None] = [
            None for _ in banks
        ]
        self._layouts: dict[tuple[int, bytes], GroupLayout] = {}
        self._views: list[list[NumpyView]] | None = None
        for bank in range(len(banks)):
            self.bind(bank)

    def __getstate__(self) -> dict[str, Any]:
        # A copy's parameters get storage of their own: it stacks its banks again on first use.
        return {**self.__dict__, "_stacks": [None for _ in self._stacks], "_views": None}

    def invalidate(self) -> None:
        """Forget the stacks and NumPy views (the parameters were moved or cast): they are made
        again from the parameters on first use."""
        self._stacks = [None for _ in self._stacks]
        self._views = None

    # ------------------------------------------------------------------ stacks

    def bind(self, bank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack bank ``bank``'s current parameters and make them views of the stack.

        The stack holds the weights transposed, ``(n, in, out)`` and contiguous, the layout
        a batched product reads fastest; each ``weight`` parameter is a transposed view. A
        square bank has one more slot after its members, the identity (weight ``I``, bias
        ``0``), which PASS, stop and the rows of ended routes go through: ``x @ I + 0`` is
        ``x`` exactly, and the ReLU is not applied to that slot.
        """
        linears = self.banks[bank]
        with torch.no_grad():
            weights = [linear.weight.detach().t() for linear in linears]
            biases = [linear.bias.detach() for linear in linears]
            if self.identity[bank]:
                weights.append(torch.eye(weights[0].shape[0]).to(weights[0]))
                biases.append(torch.zeros_like(biases[0]))
            weight, bias = torch.stack(weights), torch.stack(biases)
            for index, linear in enumerate(linears):
                linear.weight.data = weight[index].t()
                linear.bias.data = bias[index]
            rows = RowStack(weight, bias.unsqueeze(1), None, None)
            if self.identity[bank]:
                keep = torch.ones_like(bias[:, :1, None])
                keep[-1] = 0.0
                floor = torch.zeros_like(keep)
                floor[-1] = -math.inf
                rows = rows._replace(floor=floor if self.relu[bank] else None, keep=keep)
        self._stacks[bank] = (weight, bias, _data_pointers(linears), rows)
        self._views = None
        return weight, bias

    def stacked(self, bank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bank ``bank``'s stacked weight ``(n, in, out)`` and bias ``(n, out)``."""
        stack = self._stacks[bank]
        if stack is None or _data_pointers(self.banks[bank]) != stack[2]:
            return self.bind(bank)
        return stack[0], stack[1]

    def row_stack(self, bank: int) -> RowStack:
        """Bank ``bank``'s stacks as the per-row kernel (:mod:`routing_env.network.rows`)
        reads them."""
        stack = self._stacks[bank]
        if stack is None or _data_pointers(self.banks[bank]) != stack[2]:
            self.bind(bank)
            stack = self._stacks[bank]
        return stack[3]

    def is_current(self, record: Leaf | Product, stamp: tuple[int, int]) -> bool:
        """Whether the stack ``record`` read is still its bank's, unchanged since ``stamp``
        (its weight's and bias's versions then: an update, an optimizer step and
        ``load_state_dict`` all bump them)."""
        current = self._stacks[record.bank]
        return (
            current is not None
            and current[0] is record.stack_weight
            and (record.stack_weight._version, record.stack_bias._version) == stamp
            and _data_pointers(self.banks[record.bank]) == current[2]
        )

    def numpy_views(self) -> list[list[NumpyView]]:
        """Each member's weight and bias as NumPy views of its parameters (CPU only), with its
        bank's ReLU flag: they share memory, so optimizer steps are seen at once."""
        if self._views is None:
            self._views = [
                [
                    (linear.weight.detach().numpy(), linear.bias.detach().numpy(), relu)
                    for linear in linears
                ]
                for linears, relu in zip(self.banks, self.relu, strict=True)
            ]
        return self._views

    # ------------------------------------------------------------------ grouping

    def size(self, bank: int) -> int:
        """Slots of ``bank``: its members, plus the identity slot where it has one."""
        return len(self.banks[bank]) + int(self.identity[bank])

    def members_used(self, bank: int, values: np.ndarray) -> np.ndarray:
        """Members of ``bank`` among ``values`` (other values, the identity's included, are
        ignored)."""
        count = len(self.banks[bank])
        values = values[(values >= 0) & (values < count)]
        return np.flatnonzero(np.bincount(values, minlength=count))

    def groups(self, bank: int, actions: np.ndarray) -> np.ndarray | None:
        """Each row's member of ``bank`` (the identity slot for PASS, stop and ``-1``), or
        ``None`` if a row has no member there (PASS or ``-1`` at a non-square layer)."""
        count = len(self.banks[bank])
        low, high = actions.min(), actions.max()
        if low >= 0 and high < count:
            return actions
        if not self.identity[bank] or high > count:
            return None
        return actions if low >= 0 else np.where(actions < 0, count, actions)

    def layout(self, bank: int, groups: np.ndarray) -> GroupLayout:
        """The grouping of ``groups`` in ``bank``, from a small cache: the module update meets
        again the layouts that routing the same batch computed (same actions, same order)."""
        size = self.size(bank)
        key = (size, groups.tobytes())
        cache = self._layouts
        layout = cache.get(key)
        if layout is None:
            layout = GroupLayout(groups, size)
            if len(cache) >= LAYOUT_CACHE:
                del cache[next(iter(cache))]
            cache[key] = layout
        return layout

    def module_slots(self, bank: int, layout: GroupLayout) -> int:
        """Padded slots of ``layout`` that go through members: all but the identity slot's,
        which come last."""
        start = layout.first_slot_of(len(self.banks[bank])) if self.identity[bank] else None
        return len(layout.sources) if start is None else start

    # ------------------------------------------------------------------ products

    def weights(
        self,
        bank: int,
        layout: GroupLayout,
        device: torch.device,
        chunks: int,
        leaves: list[Leaf] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(chunks, in, out)`` and bias ``(chunks, out)`` of the first ``chunks``
        chunks of ``layout`` in ``bank`` (the members' chunks: the identity slot's come last
        and are not multiplied, see :meth:`product`).

        Three sources: with ``leaves``, leaves (the stack itself or the chunks' rows of it,
        detached) recorded there, whose gradients the update applies; else with autograd on,
        the used members' parameters stacked, so gradients reach exactly those parameters;
        otherwise the stack itself, no copy.
        """
        if leaves is None and torch.is_grad_enabled():
            linears = self.banks[bank]
            members = [member for member in layout.used.tolist() if member < len(linears)]
            weight = torch.stack([linears[member].weight.t() for member in members])
            bias = torch.stack([linears[member].bias for member in members])
            if not layout.one_chunk_per_group:
                index = layout.tensor("chunk_local", device)[:chunks]
                weight, bias = weight.index_select(0, index), bias.index_select(0, index)
            return weight, bias
        stack_weight, stack_bias, index, weight, bias = self.chunk_weights(
            bank, layout, device, chunks
        )
        if leaves is not None:
            weight = weight.detach().requires_grad_(True)
            bias = bias.detach().requires_grad_(True)
            leaves.append(Leaf(stack_weight, stack_bias, bank, index, weight, bias))
        return weight, bias

    def chunk_weights(
        self, bank: int, layout: GroupLayout, device: torch.device, chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Bank ``bank``'s stacked weight and bias, the stack rows of the first ``chunks``
        chunks of ``layout`` (``None`` when they are a prefix of the stack) and those chunks'
        weight and bias, read from the stack (views for a prefix)."""
        stack_weight, stack_bias = weight, bias = self.stacked(bank)
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

    def linear(
        self,
        bank: int,
        h: torch.Tensor,
        groups: np.ndarray,
        leaves: list[Leaf] | None = None,
    ) -> torch.Tensor:
        """Row ``i`` of ``h`` through member ``groups[i]`` of ``bank`` (and its ReLU), in one
        batched product, in batch order."""
        layout = self.layout(bank, groups)
        if layout.single:
            if self.module_slots(bank, layout) == 0:  # every row takes the identity
                return h
            weight, bias = self.weights(bank, layout, h.device, 1, leaves)
            out = torch.addmm(bias[0], h, weight[0])
            return torch.relu(out) if self.relu[bank] else out
        out = self.product(bank, h, layout.tensor("sources", h.device), layout, leaves=leaves)
        return out.index_select(0, layout.tensor("slots", h.device))

    def product(
        self,
        bank: int,
        source: torch.Tensor,
        index: torch.Tensor,
        layout: GroupLayout,
        *,
        leaves: list[Leaf] | None = None,
        tape: list[Product] | None = None,
    ) -> torch.Tensor:
        """The padded batch of ``layout`` (slot ``j`` holds row ``index[j]`` of ``source``)
        through its chunks' members (and ReLU). The identity slot's rows, the last ones, pass
        unchanged (what ``x @ I + 0`` gives, without the product, and no ReLU); with autograd
        on they are gathered apart, so that no slice of the padded batch enters the autograd
        graph, and without it written into the same buffer as the products.

        ``leaves`` records the weights read as autograd leaves (:meth:`weights`); ``tape``
        (under ``no_grad``) records the depth's :class:`Product` for :func:`backward_step`.
        """
        start = self.module_slots(bank, layout)
        relu = self.relu[bank]
        chunk_index = weight = modules = out = None
        if start == 0:
            padded = source.index_select(0, index)
            if tape is not None:
                stack_weight, stack_bias = self.stacked(bank)
        else:
            whole = start == index.shape[0]
            modules = source.index_select(0, index if whole else index[:start])
            chunks = start // layout.chunk_size
            if tape is None:
                weight, bias = self.weights(bank, layout, source.device, chunks, leaves)
            else:
                stack_weight, stack_bias, chunk_index, weight, bias = self.chunk_weights(
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
                Product(
                    stack_weight=stack_weight,
                    stack_bias=stack_bias,
                    bank=bank,
                    index=chunk_index,
                    weight=weight,
                    inputs=modules,
                    activations=out if relu else None,
                    sources=index,
                    start=start,
                    # The tape's first product is the chain's first depth.
                    source_shape=source.shape if tape else None,
                )
            )
        return padded

    def chain(
        self,
        h: torch.Tensor,
        steps: list[tuple[int, np.ndarray]],
        leaves: list[Leaf] | None = None,
    ) -> torch.Tensor:
        """Whole routes, ``steps[d]`` the bank of depth ``d`` and each row's member there, kept
        in padded order between depths: one gather per depth moves each row from its slot in
        one depth's padded batch to its slot in the next (module docstring)."""
        h, layout = self.chain_padded(h, steps, leaves=leaves)
        return h.index_select(0, layout.tensor("slots", h.device))

    def chain_padded(
        self,
        h: torch.Tensor,
        steps: list[tuple[int, np.ndarray]],
        *,
        leaves: list[Leaf] | None = None,
        tape: list[Product] | None = None,
    ) -> tuple[torch.Tensor, GroupLayout]:
        """:meth:`chain` up to the last depth's padded batch, and that depth's layout."""
        device = h.device
        previous: GroupLayout | None = None
        for bank, members in steps:
            layout = self.layout(bank, members)
            if previous is None:
                sources = layout.tensor("sources", device)
            else:
                sources = torch.from_numpy(previous.slots[layout.sources]).to(device)
            h = self.product(bank, h, sources, layout, leaves=leaves, tape=tape)
            previous = layout
        return h, previous


def backward_step(product: Product, grad: torch.Tensor, lr: float) -> torch.Tensor | None:
    """Backward through one depth of a chain from ``grad``, the gradient of its padded
    output, with the plain-SGD step ``W -= lr * x^T g`` of its members fused into the product
    that computes their weight gradient; returns the gradient of the previous depth's padded
    batch (``None`` at the first depth).

    The arithmetic is autograd's through :meth:`GroupedBanks.product`: the gradient of each
    gathered row reaches its source row, ReLU passes it where the output is positive, the
    identity slot's rows pass it unchanged.
    """
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


class GroupLayout:
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


_WEIGHT, _BIAS = itemgetter("weight"), itemgetter("bias")


def _data_pointers(linears: list[nn.Linear]) -> list[int]:
    # Through `_parameters`, mapped: this runs once per bank and update, and
    # nn.Module.__getattr__ or a Python loop would cost more than the check itself.
    tables = [linear._parameters for linear in linears]
    pointer = torch.Tensor.data_ptr
    return [*map(pointer, map(_WEIGHT, tables)), *map(pointer, map(_BIAS, tables))]


def host_indices(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Integer indices as a NumPy ``int64`` array (one device-to-host copy for a tensor): the
    grouping is computed on the host."""
    if isinstance(values, torch.Tensor):
        values = values.numpy(force=True)
    elif not isinstance(values, np.ndarray):
        values = np.asarray(values)
    if values.dtype != np.int64:
        values = values.astype(np.int64)
    return values
