"""The baselines by name: ``BASELINE_NAMES`` and ``make_baseline``."""

from __future__ import annotations

import inspect
import os
from typing import Any

from routing_env.baselines.base import BaselineModel, ModelShapes, model_shapes
from routing_env.baselines.cross_stitch import CrossStitchNetwork
from routing_env.baselines.noisy_top_k import NoisyTopKNetwork
from routing_env.baselines.soft_mixture import SoftMixtureNetwork
from routing_env.baselines.task_specific import TaskSpecificNetwork
from routing_env.datasets import MultiTaskDataset

#: The names ``make_baseline`` and ``train_baseline`` accept (``001`` section 4, ``000``
#: section 5.2, ``002``).
BASELINE_NAMES = (
    "task-specific-1-fc",
    "task-specific-all-fc",
    "cross-stitch",
    "soft-mixture-all-fc",
    "noisy-top-k",
)

#: Baselines built from a bank of ``num_modules`` modules per layer; the others have one block
#: per task (or shared) and take no ``num_modules``.
MODULE_BASELINES = ("soft-mixture-all-fc", "noisy-top-k")


def make_baseline(
    name: str,
    dataset_or_shapes: MultiTaskDataset | ModelShapes | str | os.PathLike,
    *,
    hidden_dim: int = 64,
    max_depth: int = 3,
    num_modules: int = 10,
    seed: int = 0,
    **options: Any,
) -> BaselineModel:
    """Build the baseline ``name`` sized for a dataset like the routed network.

    Args:
        name: one of :data:`BASELINE_NAMES`.
        dataset_or_shapes: a ``MultiTaskDataset``, a suite name, an ``.npz`` path or
            :class:`~routing_env.baselines.base.ModelShapes`.
        hidden_dim: size of the activations between fc layers.
        max_depth: number of fc layers.
        num_modules: modules per layer for the baselines of :data:`MODULE_BASELINES`; ignored
            by the others, so one set of settings serves every baseline in a comparison.
        seed: seed of the parameter initialisation.
        **options: keywords of the model class: ``self_weight`` (cross-stitch), ``gate``
            (soft mixture), ``k``, ``k_annealing``, ``anneal_fraction``, ``experts``,
            ``w_importance``, ``w_load``, ``balance_annealing`` (noisy top-k).

    Raises:
        ValueError: for an unknown name, an option the model does not take, or bad sizes.
    """
    if name not in BASELINE_NAMES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINE_NAMES}")
    shapes = model_shapes(dataset_or_shapes)
    common: dict[str, Any] = {"hidden_dim": hidden_dim, "max_depth": max_depth, "seed": seed}
    if name in MODULE_BASELINES:
        common["num_modules"] = num_modules
    if name.startswith("task-specific"):
        if "task_specific_layers" in options:
            raise ValueError(f"{name} fixes task_specific_layers; use TaskSpecificNetwork")
        common["task_specific_layers"] = 1 if name == "task-specific-1-fc" else max_depth
    model_class = {
        "task-specific-1-fc": TaskSpecificNetwork,
        "task-specific-all-fc": TaskSpecificNetwork,
        "cross-stitch": CrossStitchNetwork,
        "soft-mixture-all-fc": SoftMixtureNetwork,
        "noisy-top-k": NoisyTopKNetwork,
    }[name]
    accepted = set(inspect.signature(model_class).parameters) - set(common) - {"shapes"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"{name} takes no option {', '.join(unknown)}; its options are {sorted(accepted)}"
        )
    return model_class(shapes, **common, **options)
