"""Greedy evaluation of the DigitsMTL test split: one sample at a time against batched.

For per-task WPL (tabular: routes from its greedy table) and an MLP router
(``reinforce-approx``: one ``act_batch`` per depth), each trained briefly on the vector env
(its routes are a learning router's, not a uniform table's), the script times one evaluation
of the whole test split (3,590 samples, layered, 3 x 10 modules) routed one sample at a time
(``evaluate_router(..., batched=False)``, the reference) and one routed all at once (the
default), alternating the two round by round, and prints the median times, their ratio and
whether the results agree (accuracy, routing map exactly; mean loss within 1e-6). One torch
thread.

Run: ``python benchmarks/evaluation.py`` (``--rounds 5`` for steadier medians, ``--device cuda``
on a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from agents import Agent, make_agent, train
from agents.evaluation import batch_obstacle, evaluate_router
from routing_env import RoutingEnv, RoutingVectorEnv

ROUTERS = ("wpl", "reinforce-approx")
TRAINING_ROUTES = 4096


def trained(name: str, device: str) -> tuple[Agent, RoutingEnv]:
    """``name`` trained for a few thousand routes, and the test env sharing its network."""
    train_env = RoutingVectorEnv(64, "digits-mtl", device=device)
    test_env = RoutingEnv("digits-mtl", split="test", network=train_env.network)
    agent = make_agent(name, train_env, seed=0)
    train(agent, train_env, TRAINING_ROUTES, seed=0, progress=False)
    return agent, test_env


def timed(agent: Agent, env: RoutingEnv, batched: bool) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    result = evaluate_router(agent, env, batched=batched)
    return time.perf_counter() - start, result


def agree(one: dict[str, Any], other: dict[str, Any]) -> bool:
    exact = all(
        one[key] == other[key]
        for key in ("accuracy", "per_task_accuracy", "routing_map", "modules_used", "episodes")
    )
    return exact and abs(one["mean_loss"] / other["mean_loss"] - 1) < 1e-6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (median)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'router':<18}{'one by one s':>14}{'batched s':>11}{'ratio':>8}  same results")
    for name in ROUTERS:
        agent, env = trained(name, args.device)
        if batch_obstacle(agent, env) is not None:
            raise RuntimeError(f"{name} is not evaluated batched: {batch_obstacle(agent, env)}")
        timed(agent, env, True)  # warm-up (layouts, stacks)
        slow, fast = [], []
        for _ in range(args.rounds):
            seconds, reference = timed(agent, env, False)
            slow.append(seconds)
            seconds, batched = timed(agent, env, True)
            fast.append(seconds)
        one, many = statistics.median(slow), statistics.median(fast)
        print(
            f"{name:<18}{one:14.3f}{many:11.4f}{one / many:7.0f}x  "
            f"{'yes' if agree(batched, reference) else 'NO'} "
            f"(accuracy {reference['accuracy']:.4f}, {reference['modules_used']} modules used)"
        )


if __name__ == "__main__":
    main()
