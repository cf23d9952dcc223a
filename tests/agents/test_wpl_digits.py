"""The headline result of issue 3: per-task WPL with the ``routing-env train`` defaults routes
DigitsMTL to at least 97% test accuracy (slow: run with ``pytest -m slow``)."""

import pytest

from agents import evaluate, make_agent, train
from routing_env.env import RoutingEnv

BUDGET = 200_000


@pytest.mark.slow
def test_per_task_wpl_defaults_reach_97_percent_on_digits():
    env = RoutingEnv("digits-mtl")  # the defaults are those of routing-env train
    test_env = RoutingEnv("digits-mtl", split="test", network=env.network, reward=env.reward_kind)
    agent = make_agent("wpl", env, seed=0)
    history = train(agent, env, BUDGET, seed=0, eval_every=BUDGET // 5, progress=False)
    result = evaluate(agent, test_env)
    # Symmetry broken: every task leaves the 90% majority rate, not only the average.
    assert result["accuracy"] >= 0.97, (result["accuracy"], history["train_accuracy"])
    assert min(result["per_task_accuracy"]) > 0.92, result["per_task_accuracy"]
