"""Routes per second of the single-sample environment (DigitsMTL, layered, 3 x 10 modules).

Prints routes/s with random valid actions, with the modules training (the default) and frozen
(``train_modules=False``), and the ratio between them (the share of time spent training the
modules). One torch thread.

Run: ``python benchmarks/single_env.py --routes 20000``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from routing_env.env import RoutingEnv


def routes_per_second(train_modules: bool, routes: int, seed: int = 0) -> float:
    """Routes/s of ``routes`` random-action routes after a short warm-up."""
    env = RoutingEnv("digits-mtl", train_modules=train_modules)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)

    def run(count: int) -> None:
        nonlocal obs, info
        for _ in range(count):
            terminated = False
            while not terminated:
                action = rng.choice(np.flatnonzero(info["action_mask"]))
                obs, _, terminated, _, info = env.step(action)
            obs, info = env.reset()

    run(500)
    start = time.perf_counter()
    run(routes)
    return routes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    training = routes_per_second(True, args.routes)
    frozen = routes_per_second(False, args.routes)
    print(f"{'setting':<28}{'routes/s':>10}")
    print(f"{'random actions, training':<28}{training:10.0f}")
    print(f"{'random actions, frozen':<28}{frozen:10.0f}")
    print(f"training / frozen: {training / frozen:.2f}")


if __name__ == "__main__":
    main()
