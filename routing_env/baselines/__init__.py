"""Non-routed baselines of the routing-network experiments (``001`` section 4, ``000`` section
5.2, ``002``), trained with the routers' data pipeline for comparisons at equal size.

```python
from routing_env.baselines import BASELINE_NAMES, make_baseline, train_baseline

history = train_baseline("task-specific-all-fc", "digits-mtl", 100_000, seed=0)
history["final"]["test_accuracy"]
model = make_baseline("noisy-top-k", "digits-mtl", k=2, experts="diverse")
logits = model(x, task)
```
"""

from routing_env.baselines.base import BaselineModel, BaselineOutput, ModelShapes, model_shapes
from routing_env.baselines.cross_stitch import CrossStitchNetwork
from routing_env.baselines.noisy_top_k import (
    EXPERT_KINDS,
    K_ANNEALING,
    NoisyTopKGate,
    NoisyTopKNetwork,
    annealed_k,
    cv_squared,
    importance,
    smooth_load,
)
from routing_env.baselines.registry import BASELINE_NAMES, MODULE_BASELINES, make_baseline
from routing_env.baselines.soft_mixture import SOFT_GATES, SoftMixtureNetwork
from routing_env.baselines.task_specific import TaskSpecificNetwork
from routing_env.baselines.training import (
    USED_WEIGHT,
    evaluate_baseline,
    train_baseline,
    training_order,
)

__all__ = [
    "BASELINE_NAMES",
    "EXPERT_KINDS",
    "K_ANNEALING",
    "MODULE_BASELINES",
    "SOFT_GATES",
    "USED_WEIGHT",
    "BaselineModel",
    "BaselineOutput",
    "CrossStitchNetwork",
    "ModelShapes",
    "NoisyTopKGate",
    "NoisyTopKNetwork",
    "SoftMixtureNetwork",
    "TaskSpecificNetwork",
    "annealed_k",
    "cv_squared",
    "evaluate_baseline",
    "importance",
    "make_baseline",
    "model_shapes",
    "smooth_load",
    "train_baseline",
    "training_order",
]
