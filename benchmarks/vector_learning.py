"""Does a router learn as well per route in the vector env as in the single-sample env?

Issue 16 asks ``routing-env train`` to default to the vector env if it learns as well per route.
This script trains each router on DigitsMTL (the environment's defaults: 3 routed layers x 10
modules, module batch 16, module lr 0.3; the routers with ``routing-env train``'s settings) for
the same number of routes, once in the single-sample env and once in the vector env at each
``--num-envs``, for each seed, and prints the final greedy test accuracy on the whole test split
and the routes per second (one torch thread; the machine may be shared, so the speeds are
indicative, the accuracies are not affected).

In the vector env a router acts on up to ``num_envs`` routes before it learns from them (the
routes of one step go to ``learn_batch`` together), and the modules see the finished routes in
sub-environment order: the question is whether this lag costs accuracy per route.

Run: ``python benchmarks/vector_learning.py`` (default 40,000 routes, seeds 0 and 1, routers
wpl q reinforce advantage reinforce-approx q-approx actor-critic, vector envs 64 and 256; about
half an hour on an idle 2-core machine, most of it the MLP routers in the single env).
``--routers``, ``--seeds``, ``--routes`` and ``--num-envs`` narrow it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import agents
from routing_env import RoutingEnv, RoutingVectorEnv

DATASET = "digits-mtl"
ROUTERS = ("wpl", "q", "reinforce", "advantage", "reinforce-approx", "q-approx", "actor-critic")


def train_once(router: str, num_envs: int, routes: int, seed: int) -> tuple[float, float]:
    """Final test accuracy and routes/s of ``router`` after ``routes`` routes (1 env = the
    single-sample env)."""
    torch.manual_seed(seed)
    env = RoutingVectorEnv(num_envs, DATASET) if num_envs > 1 else RoutingEnv(DATASET)
    test = RoutingEnv(DATASET, split="test", network=env.unwrapped.network)
    agent = agents.make_agent(router, test, seed=seed)
    start = time.perf_counter()
    agents.train(agent, env, routes, seed=seed, eval_env=test, eval_every=routes, progress=False)
    seconds = time.perf_counter() - start
    return float(agents.evaluate(agent, test)["accuracy"]), routes / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", nargs="+", default=list(ROUTERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--routes", type=int, default=40_000)
    parser.add_argument("--num-envs", nargs="+", type=int, default=[64, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = [1, *args.num_envs]
    names = ["single" if n == 1 else f"vector {n}" for n in settings]
    print(f"DigitsMTL, {args.routes:,} routes per run, seeds {args.seeds}: accuracy (routes/s)")
    print(f"{'router':<18}" + "".join(f"{name:>22}" for name in names))
    for router in args.routers:
        cells = []
        for num_envs in settings:
            runs = [train_once(router, num_envs, args.routes, seed) for seed in args.seeds]
            accuracy = " ".join(f"{100 * a:.1f}" for a, _ in runs)
            speed = np.mean([s for _, s in runs])
            cells.append(f"{accuracy} ({speed:,.0f}/s)")
        print(f"{router:<18}" + "".join(f"{cell:>22}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
