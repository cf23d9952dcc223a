"""Check that this checkout trains exactly as another one does (the speed work must not change a
bit): same seed, same routers, same envs, every result compared exactly.

Each case trains a router with ``agents.train`` and digests what the run produced: the
router's learned tables (bytes), the network's parameters (bytes), the history (train
accuracy and mean reward per epoch) and the greedy test accuracy and routing map of
``agents.evaluate``. The cases: per-task WPL in the vector env (256 envs) for 80,000 routes
at seed 0 (where it learns: issue 16 quotes 97% test accuracy) and for 20,000 at other seeds,
and for 5,000 in the single env (the env defaults: module batch 16, module lr 0.3); shorter
runs of the other tabular routers in both envs; WPL with exploration squashing
(``squash_kappa``), with the collaboration reward and with recurrent routing (routes of
different lengths), in both envs.

Each checkout runs in its own subprocess (``PYTHONPATH`` set to it); the script prints each
case's digest for both and exits with status 1 if any differs.

Run: ``python benchmarks/same_results.py --base /work/base`` (a few minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (name, router, vector?, routes, env keywords; "seed" seeds the agent and the env)
CASES = (
    ("wpl vector 80k seed 0", "wpl", True, 80_000, {"seed": 0}),
    ("wpl vector 20k", "wpl", True, 20_000, {}),
    ("wpl single 5k", "wpl", False, 5_000, {}),
    ("q vector", "q", True, 5_000, {}),
    ("q single", "q", False, 1_500, {}),
    ("reinforce vector", "reinforce", True, 5_000, {}),
    ("reinforce single", "reinforce", False, 1_500, {}),
    ("advantage vector", "advantage", True, 5_000, {}),
    ("wolf-phc vector", "wolf-phc", True, 5_000, {}),
    ("wolf-phc single", "wolf-phc", False, 1_500, {}),
    ("wpl-printed single", "wpl-printed", False, 1_500, {}),
    ("wpl vector squash", "wpl", True, 5_000, {"squash_kappa": 1.0}),
    ("wpl single squash", "wpl", False, 1_500, {"squash_kappa": 1.0}),
    ("wpl vector collaboration", "wpl", True, 5_000, {"collaboration_reward": 0.3}),
    ("wpl single collaboration", "wpl", False, 1_500, {"collaboration_reward": -0.3}),
    ("wpl vector 100 envs", "wpl", True, 5_000, {"num_envs": 100}),
    ("wpl vector recurrent", "wpl", True, 5_000, {"routing": "recurrent"}),
    ("wpl single recurrent", "wpl", False, 1_500, {"routing": "recurrent"}),
    ("q vector recurrent", "q", True, 3_000, {"routing": "recurrent"}),
)


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.hexdigest()[:16]


def _child() -> dict[str, dict[str, object]]:
    import numpy as np
    import torch

    import agents
    from routing_env import RoutingEnv, RoutingVectorEnv

    torch.set_num_threads(1)
    results = {}
    for name, router, vector, routes, options in CASES:
        options = dict(options)
        seed = options.pop("seed", None)
        if vector:
            env = RoutingVectorEnv(
                num_envs=options.pop("num_envs", 256), dataset="digits-mtl", **options
            )
        else:
            env = RoutingEnv("digits-mtl", **options)
        test = RoutingEnv("digits-mtl", split="test", network=env.unwrapped.network)
        agent = agents.make_agent(router, env, seed=3 if seed is None else seed)
        history = agents.train(
            agent, env, episodes=routes, progress=False, seed=5 if seed is None else seed
        )
        evaluation = agents.evaluate(agent, test)
        tables = [np.ascontiguousarray(getattr(agent, key)).tobytes() for key in agent.state_names]
        parameters = [p.detach().numpy().tobytes() for p in env.unwrapped.network.parameters()]
        results[name] = {
            "tables": _digest(*tables),
            "network": _digest(*parameters),
            "history": _digest(
                json.dumps([history["train_accuracy"], history["mean_reward"]]).encode()
            ),
            "test_accuracy": evaluation["accuracy"],
            "routing_map": _digest(json.dumps(evaluation["routing_map"]).encode()),
            "rng": _digest(json.dumps(agent.rng.bit_generator.state).encode()),
        }
    return results


def _run(checkout: str) -> dict[str, dict[str, object]]:
    environment = {**os.environ, "PYTHONPATH": checkout}
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child"],
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the checkout to compare against")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child()))
        return
    if not args.base:
        parser.error("--base is required")
    this, base = _run(ROOT), _run(os.path.abspath(args.base))
    differ = False
    for name, *_ in CASES:
        same = this[name] == base[name]
        differ |= not same
        print(f"{name:<28}{'same' if same else 'DIFFERENT'}  {this[name]}")
        if not same:
            print(f"{'':<28}base  {base[name]}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
