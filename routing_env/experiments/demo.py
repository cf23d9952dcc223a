"""The demonstration behind ``make demo``: per-task WPL routers learn to route DigitsMTL.

Ten tabular WPL agents (one per task, ``001`` Algorithm 3) route DigitsMTL samples through 3
routed layers of 10 untrained modules, with the settings of ``routing-env train --agent wpl``:
the vector env, 256 routes in flight.
The demo prints per-task test accuracy and the routing map (task x depth -> most chosen
module), next to two non-learning references trained on the same environment: per-task routes
(task ``t`` always takes module ``t``: ten private networks, what a router would need to find)
and random routes (what the modules learn when nobody routes: the 90% majority rate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents import make_agent
from agents.training import evaluate, train
from routing_env.env import RoutingEnv
from routing_env.settings import NETWORK_DEFAULTS, TRAIN_DEFAULTS, router_defaults
from routing_env.vector import RoutingVectorEnv


def _run(name: str, episodes: int, seed: int) -> dict[str, Any]:
    env = RoutingVectorEnv(TRAIN_DEFAULTS["num_envs"], "digits-mtl")
    test_env = RoutingEnv("digits-mtl", split="test", network=env.network, reward=env.reward_kind)
    agent = make_agent(name, test_env, seed=seed)
    history = train(
        agent,
        env,
        episodes,
        seed=seed,
        eval_env=test_env,
        progress=name == "wpl",
        eval_every=max(1, episodes // 5),
    )
    result = evaluate(agent, test_env)
    result["episodes"] = episodes
    result["seconds"] = history["seconds"]
    return result


def main(
    episodes: int = 200_000, reference_episodes: int = 30_000, seed: int = 0
) -> dict[str, Any]:
    """Train per-task WPL and the references; print the tables; return the figures."""
    print(
        f"DigitsMTL: 10 one-vs-rest tasks, 3 routed layers x 10 modules, seed {seed}, "
        f"reward +-1, module lr {NETWORK_DEFAULTS['module_lr']}, module batch "
        f"{NETWORK_DEFAULTS['module_batch_size']}, WPL {router_defaults('wpl')}, "
        f"{TRAIN_DEFAULTS['num_envs']} routes in flight (vector env)"
    )
    results = {
        "per-task WPL": _run("wpl", episodes, seed),
        "fixed per-task": _run("fixed-per-task", reference_episodes, seed),
        "random routes": _run("random", reference_episodes, seed),
    }
    header = f"{'router':<16}{'routes':>8}{'seconds':>9}{'test acc':>10}  " + " ".join(
        f"{'t' + str(t):>5}" for t in range(10)
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        cells = " ".join(f"{100 * a:5.1f}" for a in row["per_task_accuracy"])
        print(
            f"{name:<16}{row['episodes']:>8}{row['seconds']:9.0f}"
            f"{100 * row['accuracy']:9.2f}%  {cells}"
        )
    routing_map = np.asarray(results["per-task WPL"]["routing_map"])
    print("\nrouting map of per-task WPL (most chosen module per depth; P = PASS, as in train)")
    for task, route in enumerate(routing_map):
        print(f"  task {task}: " + " ".join("P" if a == 10 else str(a) for a in route))
    shared = len({tuple(route) for route in routing_map.tolist()})
    print(
        f"  {shared} distinct routes for 10 tasks; "
        f"{results['per-task WPL']['modules_used']} of 30 modules in use"
    )
    return results


if __name__ == "__main__":
    main()
