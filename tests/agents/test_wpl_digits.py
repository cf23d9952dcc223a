"""The headline result of issue 3: per-task WPL with the ``routing-env train`` defaults routes
DigitsMTL to at least 97% test accuracy (slow: run with ``pytest -m slow``).

Every task leaves the 90% majority rate too (the symmetry is broken), judged on each task's mean
over the last three evaluations: one task's accuracy dips by up to about ten points for one
evaluation and recovers by the next (measured for per-task WPL, seed 0, single env: task 1 at
97.2%, 98.3%, 86.6% at 160k, 180k, 200k routes and 95.3% at 210k; in the vector env, seed 2:
task 9 at 97.8%, 97.2%, 85.5%), so a single evaluation's worst task is mostly noise.
"""

import numpy as np
import pytest

from agents import make_agent, train
from routing_env import RoutingEnv, RoutingVectorEnv

BUDGET = 200_000
EVAL_EVERY = 20_000


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vector", "single"])
def test_per_task_wpl_defaults_reach_97_percent_on_digits(kind):
    # The vector env with 256 routes in flight is what routing-env train runs by default.
    env = RoutingVectorEnv(256, "digits-mtl") if kind == "vector" else RoutingEnv("digits-mtl")
    test_env = RoutingEnv("digits-mtl", split="test", network=env.network)
    agent = make_agent("wpl", env, seed=0)
    history = train(
        agent, env, BUDGET, seed=0, eval_env=test_env, eval_every=EVAL_EVERY, progress=False
    )
    assert history["test_accuracy"][-1] >= 0.97, history["test_accuracy"]
    recent = np.mean(history["per_task_accuracy"][-3:], axis=0)
    assert recent.min() > 0.92, history["per_task_accuracy"][-3:]
