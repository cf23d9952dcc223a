"""The demonstration behind ``make demo``: fixed, shared and random routes on DigitsMTL.

It trains the modules of three networks on the same number of routes, each routed by a
non-learning router, and prints per-task test accuracy:

* per-task routes (task ``t`` always takes module ``t``: ten private networks),
* one shared route (every task takes module 0: one network for ten conflicting tasks),
* random routes (a new random route per sample).

The learning routers of ``agents`` must find routes at least as good as the first row without
being told the task-to-module assignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents import FixedRouter, RandomRouter
from agents.base import Agent
from agents.training import evaluate, train
from routing_env.env import RoutingEnv


def main(episodes: int = 30_000, seed: int = 0) -> dict[str, Any]:
    """Train and evaluate the three routings; print a table; return the figures."""
    probe = RoutingEnv("digits-mtl")
    num_tasks = probe.dataset.num_tasks
    depth = probe.network.max_depth
    routers: dict[str, Agent] = {
        "per-task routes": FixedRouter.per_task(num_tasks, depth, probe.network.num_modules),
        "one shared route": FixedRouter({t: (0,) * depth for t in range(num_tasks)}),
        "random routes": RandomRouter(seed=seed),
    }
    test_labels = probe.dataset.test.y
    majority = float(np.mean(test_labels == np.bincount(test_labels).argmax()))
    print(
        f"DigitsMTL: {num_tasks} one-vs-rest tasks, {depth} routed layers x "
        f"{probe.network.num_modules} modules, {episodes} training routes each, seed {seed}"
    )
    results: dict[str, Any] = {}
    for name, router in routers.items():
        env = RoutingEnv("digits-mtl")
        history = train(router, env, episodes, seed=seed, progress=False)
        test_env = RoutingEnv("digits-mtl", split="test", network=env.network)
        result = evaluate(router, test_env)
        result["routes_per_s"] = episodes / history["seconds"]
        results[name] = result
    header = f"{'routing':<18}{'test acc':>9}{'routes/s':>10}  " + " ".join(
        f"{'t' + str(t):>5}" for t in range(num_tasks)
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        cells = " ".join(f"{100 * a:5.1f}" for a in row["per_task_accuracy"])
        print(f"{name:<18}{100 * row['accuracy']:8.1f}%{row['routes_per_s']:10.0f}  {cells}")
    print(f"majority rate (always predict 'other'): {100 * majority:.1f}%")
    return results


if __name__ == "__main__":
    main()
