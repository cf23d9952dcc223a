"""The soft-mixture baseline: every module of every layer applied, outputs mixed by a softmax.

``001`` section 4 ("soft-mixture-fc"): "a soft version of the router architecture. This soft
version uses the same function blocks as the routed version, but replaces the hard selection
with a trained softmax attention"; "Soft-routing uses a softmax to normalize the weights used
to combine the activations of previous layers and it shares parameters for a given layer so
that w_i^l = w_i'^l": the weights are learned parameters (like the cross-stitch weights), one
set per layer, not a function of the activation. ``000`` section 5.2 ("soft mixture-all-fc":
"a softmax-gated version of the same architecture that computes a softmax-weighted sum over
the output of all modules at each layer") says no more about what the gate sees.

Neither seed says whether the weights depend on the task. The default, ``gate="task"``, keeps
one weight vector per task and layer: the soft version of the routing-all-fc router it is
compared with, whose per-task agents choose from the task and depth alone. ``gate="shared"``
is the literal one-vector-per-layer reading; ``gate="task_activation"`` is a linear gate on
``concat(activation, onehot(task))``, the input of the routers' function approximators
(``001`` section 4).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from routing_env.baselines.base import (
    BaselineModel,
    BaselineOutput,
    ModelShapes,
    check_positive,
    layer_dims,
)
from routing_env.baselines.layers import LinearBank, initialise_parameters, make_trunk, zero_linear

SOFT_GATES = ("task", "shared", "task_activation")


class SoftMixtureNetwork(BaselineModel):
    """The routed network's modules, all applied at every layer and mixed by a softmax gate
    (``001`` section 4 "soft-mixture-fc", ``000`` section 5.2 "soft mixture-all-fc").

    Layer ``d`` computes ``h_(d+1) = sum_m g_m * module_m(h_d)``, with ``g = softmax(w)``; the
    modules are ``Linear + ReLU`` (plain ``Linear`` emitting logits at the last layer), as in
    the layered ``RoutedNetwork``. The gate logits start at zero (a uniform mixture).

    Args:
        shapes: input shape, number of tasks and number of outputs.
        hidden_dim: size of the activations between layers.
        max_depth: number of mixed layers.
        num_modules: modules per layer.
        gate: what the softmax weights depend on: ``"task"`` (default: a learned weight
            vector per task and layer), ``"shared"`` (one per layer) or ``"task_activation"``
            (a linear function of ``concat(activation, onehot(task))``); see the module
            docstring.
        seed: seed of the modules' initialisation (the routed network's scheme).

    Raises:
        ValueError: if a size is not a positive integer or ``gate`` is unknown.
    """

    gated = True

    def __init__(
        self,
        shapes: ModelShapes,
        *,
        hidden_dim: int = 64,
        max_depth: int = 3,
        num_modules: int = 10,
        gate: str = "task",
        seed: int = 0,
    ) -> None:
        super().__init__(shapes)
        check_positive(hidden_dim=hidden_dim, max_depth=max_depth, num_modules=num_modules)
        if gate not in SOFT_GATES:
            raise ValueError(f"unknown gate {gate!r}; expected one of {SOFT_GATES}")
        self.hidden_dim, self.max_depth, self.num_modules = hidden_dim, max_depth, num_modules
        self.gate = gate
        # Default initialisations draw from the global RNG: fork it, the real values come from
        # `seed` below.
        with torch.random.fork_rng(devices=[]):
            self.trunk = make_trunk(self.input_shape, hidden_dim)
            dims = layer_dims(self.trunk.output_dim, hidden_dim, self.num_outputs, max_depth)
            self.banks = nn.ModuleList(
                LinearBank(num_modules, dims[d], dims[d + 1]) for d in range(max_depth)
            )
            rows = {"task": self.num_tasks, "shared": 1}.get(gate)
            if rows is None:
                self.gate_layers = nn.ModuleList(
                    zero_linear(dims[d] + self.num_tasks, num_modules) for d in range(max_depth)
                )
            else:
                self.gate_logits = nn.Parameter(torch.zeros(max_depth, rows, num_modules))
        initialise_parameters(self, seed)

    def gate_weights(self, h: torch.Tensor, task: torch.Tensor, depth: int) -> torch.Tensor:
        """Mixing weights ``(batch, num_modules)`` of layer ``depth`` for activations ``h``."""
        if self.gate == "task_activation":
            features = torch.cat([h, F.one_hot(task, self.num_tasks).to(h.dtype)], dim=1)
            logits = self.gate_layers[depth](features)
        elif self.gate == "task":
            logits = self.gate_logits[depth, task]
        else:
            logits = self.gate_logits[depth, 0].expand(len(task), -1)
        return torch.softmax(logits, dim=1)

    def compute(self, x: torch.Tensor, task: torch.Tensor) -> BaselineOutput:
        h = self.trunk(x)
        gates = []
        for depth, bank in enumerate(self.banks):
            weights = self.gate_weights(h, task, depth)
            outputs = bank.all(h)
            if depth < self.max_depth - 1:
                outputs = torch.relu(outputs)
            h = torch.einsum("bm,bmo->bo", weights, outputs)
            gates.append(weights)
        return BaselineOutput(h, gates, h.new_zeros(()))
