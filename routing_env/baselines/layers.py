"""Building blocks of the baselines: the trunk rule, banks of same-shaped linear layers and the
seeded initialisation shared with the routed network."""

from __future__ import annotations

import math

import torch
from torch import nn

from routing_env.network import draw_default_init
from routing_env.trunks import build_trunk


def make_trunk(input_shape: tuple[int, ...], hidden_dim: int) -> nn.Module:
    """The trunk ``RoutingEnv`` gives the routed network: SimpleConvNet (``001`` section 4) for
    image inputs ``(channels, height, width)``, none (flatten) for flat vectors."""
    return build_trunk("conv" if len(input_shape) == 3 else "none", input_shape, hidden_dim)


class LinearBank(nn.Module):
    """``count`` independent linear layers ``in_dim -> out_dim`` stored as one stacked weight.

    Used for one layer's modules (all applied to the same input: :meth:`all`), for per-task
    layers (each sample through its own task's layer: :meth:`select`) and for the columns of a
    cross-stitch network (column ``j`` of the input through layer ``j``: :meth:`columns`).

    Args:
        count: number of linear layers.
        in_dim: input size of each.
        out_dim: output size of each.
    """

    def __init__(self, count: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.count, self.in_dim, self.out_dim = count, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(count, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(count, out_dim))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default linear initialisation, uniform in ``±1/sqrt(in_dim)``."""
        bound = 1.0 / math.sqrt(self.in_dim)
        with torch.no_grad():
            for tensor in (self.weight, self.bias):
                values = torch.empty(tensor.shape).uniform_(-bound, bound, generator=generator)
                tensor.copy_(values)

    def all(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer on every row: ``(batch, in_dim) -> (batch, count, out_dim)``."""
        return torch.einsum("bi,mio->bmo", x, self.weight) + self.bias

    def select(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Row ``b`` through layer ``index[b]``: ``(batch, in_dim) -> (batch, out_dim)``."""
        return torch.bmm(x.unsqueeze(1), self.weight[index]).squeeze(1) + self.bias[index]

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """Column ``j`` through layer ``j``: ``(batch, count, in_dim) -> (batch, count, out)``."""
        return torch.einsum("bmi,mio->bmo", x, self.weight) + self.bias


def initialise_parameters(model: nn.Module, seed: int) -> None:
    """Draw the weights of every linear, convolutional and bank layer of ``model`` from
    ``seed``, as ``RoutedNetwork.reset_parameters`` does (uniform in ``±1/sqrt(fan_in)``,
    batch normalisation reset), with a private generator: the global torch RNG is neither used
    nor disturbed. Other parameters (gates, cross-stitch units) keep the values their modules
    set, which do not draw random numbers."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LinearBank):
                module.reset_parameters(generator)
            elif isinstance(module, (nn.Linear, nn.Conv2d)) and not getattr(
                module, "zero_initialised", False
            ):
                draw_default_init(module, generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()


def zero_linear(in_dim: int, out_dim: int, bias: bool = True) -> nn.Linear:
    """A linear layer initialised to zero and left at zero by :func:`initialise_parameters`
    (gates start uniform: Shazeer et al. 2017, whose noisy gating ``002`` section 2.1 uses,
    initialise the gating weights to zero, "no signal and some noise")."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    layer.zero_initialised = True
    return layer
