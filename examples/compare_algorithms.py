"""The ``001`` figure 4 comparison on our suites: which RL algorithm routes best?

Trains, on the same environment settings and seeds, WPL (tabular, per task), Q-learning
(tabular), Q-learning with an MLP, REINFORCE with an MLP (the four of ``001`` figure 4), plus
Monte Carlo advantage learning (tabular) and advantage actor-critic (MLP, ``000`` 7.1), with the
environment and router settings of ``routing-env train`` (``routing_env.cli``). Writes
``comparison.md`` (test accuracy mean ± std over seeds, selection entropy, modules used, time)
and ``learning_curves.png`` (test accuracy per epoch, mean over seeds) to ``--out``.

Run: ``python examples/compare_algorithms.py --episodes 100000 --seeds 3 --out runs/compare``
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from routing_env.cli import TRAIN_DEFAULTS  # noqa: E402

ALGORITHMS = {
    "WPL (table)": "wpl",
    "Q-learning (table)": "q",
    "Q-learning (MLP)": "q-approx",
    "REINFORCE (MLP)": "reinforce-approx",
    "advantage (table)": "advantage",
    "actor-critic (MLP)": "actor-critic",
}


def run_one(job: tuple[str, str, int, int, dict[str, Any]]) -> dict[str, Any]:
    """Train one (algorithm, seed) and return its history."""
    import torch

    import routing_env  # noqa: F401
    from agents import evaluate, make_agent, train
    from routing_env.cli import agent_defaults
    from routing_env.env import RoutingEnv

    torch.set_num_threads(1)
    label, agent_name, seed, episodes, env_kwargs = job
    env = RoutingEnv(**env_kwargs)
    test_kwargs = {k: v for k, v in env_kwargs.items() if k in ("dataset", "reward")}
    test = RoutingEnv(split="test", network=env.network, **test_kwargs)
    agent = make_agent(agent_name, env, seed=seed, **agent_defaults(agent_name))
    history = train(
        agent,
        env,
        episodes,
        eval_env=test,
        seed=seed,
        eval_every=episodes // 10,
        eval_episodes=1000,
        progress=False,
    )
    final = evaluate(agent, test)
    return {"label": label, "seed": seed, "history": history, "final": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="digits-mtl")
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--reward", default="correct", choices=["correct", "neg_loss"], help="final reward"
    )
    parser.add_argument("--module-lr", type=float, default=TRAIN_DEFAULTS["module_lr"])
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    env_kwargs = {
        **TRAIN_DEFAULTS,
        "dataset": args.suite,
        "reward": args.reward,
        "module_lr": args.module_lr,
    }
    jobs = [
        (label, name, seed, args.episodes, env_kwargs)
        for label, name in ALGORITHMS.items()
        for seed in range(args.seeds)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))

    lines = [
        f"# Routing algorithms on {args.suite}",
        "",
        f"{args.episodes} training routes, seeds 0..{args.seeds - 1}, reward {args.reward}, "
        f"module lr {args.module_lr}, module batch {TRAIN_DEFAULTS['module_batch_size']}, "
        "router settings of `routing-env train`, 3 routed layers x (num tasks) modules, "
        "full test split, greedy routes.",
        "",
        "| algorithm | test accuracy (mean ± std) | route entropy (nats) | modules used "
        "| minutes per run |",
        "| --- | --- | --- | --- | --- |",
    ]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label in ALGORITHMS:
        mine = [run for run in runs if run["label"] == label]
        accuracy = np.array([run["final"]["accuracy"] for run in mine])
        entropy = np.mean([run["final"]["route_entropy"] for run in mine])
        modules = np.mean([run["final"]["modules_used"] for run in mine])
        minutes = np.mean([run["history"]["seconds"] for run in mine]) / 60
        lines.append(
            f"| {label} | {100 * accuracy.mean():.1f} ± {100 * accuracy.std():.1f} "
            f"| {entropy:.2f} | {modules:.1f} | {minutes:.1f} |"
        )
        curves = np.array([run["history"]["test_accuracy"] for run in mine])
        episodes = mine[0]["history"]["episode"]
        axis.plot(episodes, curves.mean(axis=0), label=label)
        axis.fill_between(episodes, curves.min(axis=0), curves.max(axis=0), alpha=0.15)
    axis.set(
        xlabel="training routes",
        ylabel="test accuracy (1000 samples, greedy)",
        title=f"RL algorithms as routers on {args.suite} ({args.seeds} seeds)",
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(args.out, "learning_curves.png"), dpi=110)
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "comparison.md"), "w") as handle:
        handle.write(table)
    print(table)


if __name__ == "__main__":
    main()
