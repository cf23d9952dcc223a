"""Shared, non-routed trunks that turn a raw input into the first activation.

Every sample passes through the trunk before the router's first decision (``001`` section 4:
the convolutional layers of SimpleConvNet are shared, only the fully connected layers are
routed). A trunk is an ordinary ``nn.Module`` with an ``output_dim`` attribute.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class IdentityTrunk(nn.Module):
    """No trunk: the flattened input is the first activation."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.output_dim = math.prod(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class MLPTrunk(nn.Module):
    """One fully connected layer with ReLU: flattened input -> ``output_dim``."""

    def __init__(self, input_shape: tuple[int, ...], output_dim: int) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.layer = nn.Linear(math.prod(input_shape), output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.layer(x.flatten(1)))


class SimpleConvNet(nn.Module):
    """The 4-block convolutional trunk of ``001`` section 4 (Ravi & Larochelle, 2017).

    Each block is a 3x3 convolution with ``channels`` filters, batch normalisation, ReLU and a
    2x2 max-pool; the result is flattened (28x28 -> 32 features, 32x32 -> 128 features with
    the default 32 channels).
    """

    def __init__(self, input_shape: tuple[int, ...], channels: int = 32, blocks: int = 4) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(
                "the conv trunk needs image inputs of shape (channels, height, width); "
                f"got {input_shape}"
            )
        layers: list[nn.Module] = []
        in_channels, height, width = input_shape
        for _ in range(blocks):
            layers += [
                nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels, height, width = channels, height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(f"input {input_shape} is too small for {blocks} pooling blocks")
        self.features = nn.Sequential(*layers)
        self.output_dim = channels * height * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


def build_trunk(kind: str | nn.Module, input_shape: tuple[int, ...], hidden_dim: int) -> nn.Module:
    """Return the trunk named ``kind`` ("none", "mlp", "conv") or ``kind`` itself if a module.

    A user module must have an ``output_dim`` attribute giving the size of its flat output.
    """
    if isinstance(kind, nn.Module):
        if not isinstance(getattr(kind, "output_dim", None), int):
            raise ValueError("a custom trunk module needs an integer attribute `output_dim`")
        return kind
    if kind == "none":
        return IdentityTrunk(input_shape)
    if kind == "mlp":
        return MLPTrunk(input_shape, hidden_dim)
    if kind == "conv":
        return SimpleConvNet(input_shape)
    raise ValueError(f"unknown trunk {kind!r}; expected 'none', 'mlp', 'conv' or an nn.Module")
