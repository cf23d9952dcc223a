"""Cross-stitch networks (Misra et al., 2016) as the baseline of ``001`` section 4 and ``000``
section 5.2.

"They maintain one model per task with a shared input layer, and 'cross stitch' connection
layers, which allow sharing between tasks. [...] the input for a function block i in layer l
[is] given by a linear combination of the activations computed by all the function blocks of
layer l - 1. That is: input_i^l = sum_j w_ij^l v_j^(l-1), for learned weights w_ij^l [...]. For
our experiments, we add a cross-stitch layer to each of the routed layers" (``001`` section 4).
"""

from __future__ import annotations

import torch
from torch import nn

from routing_env.baselines.base import (
    BaselineModel,
    BaselineOutput,
    ModelShapes,
    check_positive,
    layer_dims,
)
from routing_env.baselines.layers import LinearBank, initialise_parameters, make_trunk


def stitch_init(num_tasks: int, self_weight: float) -> torch.Tensor:
    """The initial ``num_tasks x num_tasks`` cross-stitch matrix: ``self_weight`` on the
    diagonal and the rest of each row spread evenly, so rows sum to 1 (Misra et al. initialise
    the units as convex combinations weighted towards each task's own column; with
    ``self_weight=1`` the unit is the identity and the columns are independent)."""
    if num_tasks == 1:
        return torch.ones(1, 1)
    other = (1.0 - self_weight) / (num_tasks - 1)
    return torch.full((num_tasks, num_tasks), other) + (self_weight - other) * torch.eye(num_tasks)


class CrossStitchNetwork(BaselineModel):
    """One column of ``max_depth`` fc layers per task on the shared trunk, with a learned
    cross-stitch unit between consecutive layers (``001`` section 4, ``000`` section 5.2).

    Every sample runs through all columns (the stitch units mix them); the logits of a sample
    are those of its own task's column. The units sit where ``001`` puts them, on the input of
    every fc layer after the first: ``input_i^l = sum_j w_ij^l v_j^(l-1)``, with ``v`` the
    previous layer's activations after ReLU. The first layer needs none: every column receives
    the same shared trunk output there.

    Args:
        shapes: input shape, number of tasks and number of outputs.
        hidden_dim: size of the activations between fc layers.
        max_depth: fc layers per column (the routed network's routed layers).
        self_weight: initial weight of a column on itself; the remaining ``1 - self_weight`` of
            each row is spread over the other columns (Misra et al. initialise near identity,
            e.g. 0.9 / 0.1 for two tasks). ``1.0`` starts from independent columns.
        seed: seed of the fc layers' initialisation (the routed network's scheme).

    Raises:
        ValueError: if a size is not a positive integer or ``self_weight`` is outside [0, 1].
    """

    def __init__(
        self,
        shapes: ModelShapes,
        *,
        hidden_dim: int = 64,
        max_depth: int = 3,
        self_weight: float = 0.9,
        seed: int = 0,
    ) -> None:
        super().__init__(shapes)
        check_positive(hidden_dim=hidden_dim, max_depth=max_depth)
        if not 0.0 <= self_weight <= 1.0:
            raise ValueError(f"self_weight must lie in [0, 1], got {self_weight!r}")
        self.hidden_dim, self.max_depth = hidden_dim, max_depth
        # Default initialisations draw from the global RNG: fork it, the real values come from
        # `seed` below.
        with torch.random.fork_rng(devices=[]):
            self.trunk = make_trunk(self.input_shape, hidden_dim)
            dims = layer_dims(self.trunk.output_dim, hidden_dim, self.num_outputs, max_depth)
            self.columns = nn.ModuleList(
                LinearBank(self.num_tasks, dims[d], dims[d + 1]) for d in range(max_depth)
            )
        self.stitches = nn.ParameterList(
            nn.Parameter(stitch_init(self.num_tasks, self_weight)) for _ in range(max_depth - 1)
        )
        initialise_parameters(self, seed)

    def compute(self, x: torch.Tensor, task: torch.Tensor) -> BaselineOutput:
        shared = self.trunk(x)
        h = shared.unsqueeze(1).expand(-1, self.num_tasks, -1)
        for depth, layer in enumerate(self.columns):
            if depth > 0:
                h = torch.einsum("ij,bjh->bih", self.stitches[depth - 1], h)
            h = layer.columns(h)
            if depth < self.max_depth - 1:
                h = torch.relu(h)
        logits = h[torch.arange(len(task), device=h.device), task]
        return BaselineOutput(logits, None, logits.new_zeros(()))
