"""What every non-routed baseline shares: its shapes, its layer sizes and its output.

The baselines of ``001`` section 4 and ``000`` section 5.2 are compared with the routed network
at equal size: the same trunk, then ``max_depth`` fully connected layers, the first
``trunk.output_dim -> hidden_dim``, the middle ones ``hidden_dim -> hidden_dim`` and the last
``hidden_dim -> num_outputs`` class logits, ReLU between layers (the layered ``RoutedNetwork``,
``001`` "routing-all-fc"). They differ only in how those layers are shared between tasks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from routing_env.datasets import MultiTaskDataset
from routing_env.env import resolve_dataset


@dataclass(frozen=True)
class ModelShapes:
    """The sizes a baseline is built for.

    Attributes:
        input_shape: shape of one raw input (``(64,)`` for flat vectors, ``(1, 28, 28)`` for
            images; image inputs get the convolutional trunk).
        num_tasks: number of tasks; task ids are ``0 .. num_tasks - 1``.
        num_outputs: class logits per sample (classes per task).
    """

    input_shape: tuple[int, ...]
    num_tasks: int
    num_outputs: int

    def __post_init__(self) -> None:
        if not self.input_shape or any(int(s) < 1 for s in self.input_shape):
            raise ValueError(f"input_shape must be non-empty and positive, got {self.input_shape}")
        # A list or NumPy sizes compare unequal to the same tuple: store plain ints.
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        for name in ("num_tasks", "num_outputs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


def model_shapes(source: MultiTaskDataset | ModelShapes | str | os.PathLike) -> ModelShapes:
    """The :class:`ModelShapes` of a dataset (object, suite name or ``.npz`` path) or shapes.

    Raises:
        ValueError: for a regression dataset; the baselines are classifiers, compared with the
            routers on accuracy.
    """
    if isinstance(source, ModelShapes):
        return source
    dataset = resolve_dataset(source)
    if dataset.task_type != "classification":
        raise ValueError(
            f"dataset {dataset.name!r} is a regression dataset; the baselines are classifiers "
            "(cross-entropy loss, accuracy)"
        )
    return ModelShapes(tuple(dataset.input_shape), int(dataset.num_tasks), dataset.num_outputs)


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def layer_dims(trunk_dim: int, hidden_dim: int, num_outputs: int, max_depth: int) -> list[int]:
    """Sizes of the activations through the ``max_depth`` fc layers, trunk output first:
    ``[trunk_dim, hidden_dim, ..., hidden_dim, num_outputs]`` (``max_depth + 1`` entries), as
    in the layered ``RoutedNetwork``."""
    return [trunk_dim] + [hidden_dim] * (max_depth - 1) + [num_outputs]


@dataclass
class BaselineOutput:
    """What one forward pass of a baseline computed.

    Attributes:
        logits: class logits, shape ``(batch, num_outputs)``.
        gates: per fc layer, the weight each sample put on each module, shape
            ``(batch, num_modules)`` (rows sum to 1); ``None`` for models without a gate.
        auxiliary_loss: loss to add to the classification loss when training (the balancing
            losses of noisy top-k gating); a zero scalar when the model has none.
    """

    logits: torch.Tensor
    gates: list[torch.Tensor] | None
    auxiliary_loss: torch.Tensor


class BaselineModel(nn.Module):
    """Base class of the baselines: input checks, the gate-aware forward pass and progress.

    Subclasses implement :meth:`compute`. ``forward(x, task)`` returns class logits;
    :meth:`run` returns the whole :class:`BaselineOutput`.

    Args:
        shapes: input shape, number of tasks and number of outputs.
    """

    #: Whether the model mixes modules through a gate (then ``BaselineOutput.gates`` is set).
    gated: bool = False

    def __init__(self, shapes: ModelShapes) -> None:
        super().__init__()
        self.shapes = shapes
        self.input_shape = tuple(int(s) for s in shapes.input_shape)
        self.num_tasks = shapes.num_tasks
        self.num_outputs = shapes.num_outputs

    def set_progress(self, fraction: float) -> None:
        """Tell the model how far training has come (0 at the start, 1 at the end of the
        budget). Models with training schedules (noisy top-k's k-annealing) override this."""

    def compute(self, x: torch.Tensor, task: torch.Tensor) -> BaselineOutput:
        """The forward pass on checked inputs; see :meth:`run`."""
        raise NotImplementedError

    def run(self, x: torch.Tensor, task: torch.Tensor) -> BaselineOutput:
        """Logits, gates and auxiliary loss of a batch.

        Args:
            x: raw inputs, shape ``(batch, *input_shape)``.
            task: task id of each sample, integer tensor of shape ``(batch,)``.

        Raises:
            ValueError: if ``x`` or ``task`` have the wrong shape or ``task`` holds an id outside
                ``0 .. num_tasks - 1``.
        """
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected inputs of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if task.dim() != 1 or task.shape[0] != x.shape[0]:
            raise ValueError(
                f"task must have shape ({x.shape[0]},) to match the inputs, got {tuple(task.shape)}"
            )
        if task.dtype.is_floating_point or task.dtype == torch.bool:
            raise ValueError(f"task must hold integer ids, got dtype {task.dtype}")
        if len(task) and (int(task.min()) < 0 or int(task.max()) >= self.num_tasks):
            raise ValueError(
                f"task ids must lie in 0..{self.num_tasks - 1}, got {task.min()}..{task.max()}"
            )
        return self.compute(x, task.long())

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Class logits of shape ``(batch, num_outputs)``; see :meth:`run`."""
        return self.run(x, task).logits
