"""Task-specific baselines: shared fc layers with private per-task fc layers on top.

``001`` section 4 and ``000`` section 5.2: "The task-specific-1-fc baseline has a separate last
fully connected layer for each task and shares the rest of the layers for all tasks. The
task specific-all-fc baseline has a separate set of all the fully connected layers for each
task." Which parameters are shared is fixed by the architecture, not learned (unlike routing).
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


class TaskSpecificNetwork(BaselineModel):
    """Shared trunk, then ``max_depth`` fc layers of which the last ``task_specific_layers`` are
    private to each task (``001`` section 4, ``000`` section 5.2).

    ``task_specific_layers=1`` is task-specific-1-fc, ``task_specific_layers=max_depth`` is
    task-specific-all-fc (then only the trunk is shared). The shared trunk is the routed
    network's (none for flat inputs, SimpleConvNet for images).

    Args:
        shapes: input shape, number of tasks and number of outputs.
        hidden_dim: size of the activations between fc layers.
        max_depth: number of fc layers (the routed network's routed layers).
        task_specific_layers: how many of the last fc layers each task has its own copy of.
        seed: seed of the parameter initialisation (the routed network's scheme).

    Raises:
        ValueError: if a size is not a positive integer or ``task_specific_layers`` is not in
            ``1 .. max_depth``.
    """

    def __init__(
        self,
        shapes: ModelShapes,
        *,
        hidden_dim: int = 64,
        max_depth: int = 3,
        task_specific_layers: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(shapes)
        check_positive(hidden_dim=hidden_dim, max_depth=max_depth)
        if not isinstance(task_specific_layers, int) or not 1 <= task_specific_layers <= max_depth:
            raise ValueError(
                f"task_specific_layers must be an integer in 1..max_depth={max_depth}, "
                f"got {task_specific_layers!r}"
            )
        self.hidden_dim, self.max_depth = hidden_dim, max_depth
        self.task_specific_layers = task_specific_layers
        self.first_specific = max_depth - task_specific_layers
        # Default initialisations draw from the global RNG: fork it, the real values come from
        # `seed` below.
        with torch.random.fork_rng(devices=[]):
            self.trunk = make_trunk(self.input_shape, hidden_dim)
            dims = layer_dims(self.trunk.output_dim, hidden_dim, self.num_outputs, max_depth)
            self.layers = nn.ModuleList(
                nn.Linear(dims[d], dims[d + 1])
                if d < self.first_specific
                else LinearBank(self.num_tasks, dims[d], dims[d + 1])
                for d in range(max_depth)
            )
        initialise_parameters(self, seed)

    def compute(self, x: torch.Tensor, task: torch.Tensor) -> BaselineOutput:
        h = self.trunk(x)
        for depth, layer in enumerate(self.layers):
            h = layer(h) if depth < self.first_specific else layer.select(h, task)
            if depth < self.max_depth - 1:
                h = torch.relu(h)
        return BaselineOutput(h, None, h.new_zeros(()))
