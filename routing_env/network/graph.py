"""The record of routing one batch, kept for the module update that trains on it."""

from __future__ import annotations

import numpy as np
import torch

from routing_env.network.kernel import GroupLayout, Leaf, Product
from routing_env.network.rows import RowProduct


class RouteGraph:
    """The forward pass of routing one batch, kept for the module update that trains on it.

    The vector environment routes a batch depth by depth, and :meth:`RoutedNetwork.update`
    would compute those routes' forward pass again once they ended. Passed to
    :meth:`RoutedNetwork.apply`, a ``RouteGraph`` makes each depth be computed as
    :meth:`RoutedNetwork.update` computes it (same grouping, same batched products, rows kept
    in padded order between depths; with ``by_hand`` the products kept for the update by hand,
    else with autograd on, on the same weight leaves; with ``rows``, a batch small enough for
    the per-row kernel, :mod:`routing_env.network.rows`, its products kept in batch order), so
    the update can start from the kept outputs: the same numbers for one forward pass less.
    :meth:`RoutedNetwork.add_routes` uses it only while it is current (see
    :meth:`RoutedNetwork._graph_current`), else computes the forward pass as before.

    ``records`` are the weight leaves (:class:`Leaf`; with ``by_hand`` the :class:`Product`,
    with ``rows`` the :class:`RowProduct`) of every depth, ``stamps`` the versions of the
    stacked weights they were read from, ``actions`` the actions of each depth so far,
    ``inputs`` the raw inputs of the routes (the first depth applies to their embedding),
    ``padded`` the activations leaving the last depth so far, in the padded order of its
    ``layout`` (``None`` with ``rows``: in batch order). :meth:`discard` frees the graph.
    """

    __slots__ = (
        "records",
        "stamps",
        "actions",
        "inputs",
        "padded",
        "layout",
        "by_hand",
        "rows",
        "_open",
    )

    def __init__(self, inputs: torch.Tensor, by_hand: bool = False, rows: bool = False) -> None:
        self.by_hand = by_hand
        self.rows = rows
        self.records: list[Leaf] | list[Product] | list[RowProduct] = []
        self.stamps: list[tuple[int, int]] = []
        self.actions: list[np.ndarray] = []
        self.inputs: torch.Tensor | None = inputs
        self.padded: torch.Tensor | None = None
        self.layout: GroupLayout | None = None
        self._open = True

    def expects(self, depth: int, h: torch.Tensor) -> bool:
        """Whether applying ``depth`` to ``h`` continues this graph: the next depth, on the
        previous depth's rows."""
        if not self._open or depth != len(self.actions):
            return False
        rows = self.inputs.shape[0] if self.layout is None else len(self.layout.slots)
        return h.shape[0] == rows

    def extend(
        self, actions: np.ndarray, padded: torch.Tensor, layout: GroupLayout | None
    ) -> None:
        """Close one more depth: its ``actions`` and its ``padded`` output in ``layout``'s
        order (``None``: in batch order); the records it added (since the last depth) are
        stamped with their stacks' versions."""
        for record in self.records[len(self.stamps) :]:
            self.stamps.append((record.stack_weight._version, record.stack_bias._version))
        self.actions.append(actions)
        self.padded, self.layout = padded, layout

    def discard(self) -> None:
        """Drop the graph (its memory is freed) and refuse further depths."""
        self._open = False
        self.records, self.stamps, self.actions = [], [], []
        self.inputs = self.padded = self.layout = None
