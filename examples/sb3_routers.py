"""Stable-Baselines3 agents as routers: PPO, A2C, DQN and MaskablePPO on SyntheticMTL and DigitsMTL.

Every router trains through :func:`agents.sb3.make_vec_env` (the batched ``RoutingVectorEnv``
behind SB3's ``VecEnv`` API) with ``MultiInputPolicy`` on the ``Dict`` observation, and is
measured with :func:`agents.evaluate` on the test split, the metrics of the project's own
routers. DQN runs twice, with SB3's default replay buffer (one million transitions: nothing
is ever evicted at these budgets) and with a small one; a :class:`ReplayStalenessCallback`
routes the buffered routes again under the current modules and reports how many of them would
now be paid a different reward (``000`` section 3.1.3.3: module updates invalidate replay).

Writes to ``--out``: ``results.json``, ``sb3_routers.md`` (the table: test accuracy, route
entropy, modules in use, training wall time, mean ± std over seeds), ``learning_curves.png``
(test accuracy against environment steps, mean over seeds) and ``replay_staleness.png``.

Budgets: on SyntheticMTL (6 tasks in 2 clusters of opposite labels, 3 routed layers x 6
modules) PPO with default hyperparameters stayed at chance after 40k steps and reached 95%
after 200k in a prototype measurement; the default ``--steps 30000`` (a few minutes for
everything, one seed) shows the start of learning only. For converged figures:

Run: ``python examples/sb3_routers.py --steps 200000 --seeds 3 --out runs/sb3``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from agents.training import evaluation_indices  # noqa: E402
from routing_env.experiments.arguments import SEEDS_HELP, parse_seeds  # noqa: E402

SUITES = {"synthetic": "synthetic-mtl", "digits": "digits-mtl"}
ROUTERS = ("ppo", "a2c", "dqn", "dqn-small-buffer", "maskable-ppo")


def build_model(router: str, env: Any, seed: int, args: argparse.Namespace) -> Any:
    """The SB3 model for ``router`` (SB3 defaults except the flags named in ``--help``)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, DQN, PPO

    common = {"seed": seed, "device": "cpu", "verbose": 0}
    if router == "ppo":
        return PPO("MultiInputPolicy", env, n_steps=args.n_steps, **common)
    if router == "maskable-ppo":
        return MaskablePPO("MultiInputPolicy", env, n_steps=args.n_steps, **common)
    if router == "a2c":
        return A2C("MultiInputPolicy", env, **common)
    if router == "dqn":
        return DQN("MultiInputPolicy", env, **common)
    if router == "dqn-small-buffer":
        return DQN("MultiInputPolicy", env, buffer_size=args.small_buffer, **common)
    raise ValueError(f"unknown router {router!r}; choose from {ROUTERS}")


def run_one(suite: str, router: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one router on one suite with one seed; its curves and final test metrics."""
    import agents
    from agents.sb3 import ReplayStalenessCallback, RouterEvalCallback, make_vec_env
    from routing_env import RoutingEnv

    dataset = SUITES[suite]
    env = make_vec_env(dataset, num_envs=args.num_envs)
    test = RoutingEnv(dataset, split="test", network=env.get_attr("network")[0])
    env.seed(seed)
    torch.manual_seed(seed)
    model = build_model(router, env, seed, args)
    every = max(1, args.steps // args.points)
    evaluation = RouterEvalCallback(test, every, episodes=args.eval_episodes)
    callbacks: list[Any] = [evaluation]
    staleness = None
    if router.startswith("dqn"):
        staleness = ReplayStalenessCallback(every, sample_size=500, seed=seed)
        callbacks.append(staleness)
    began = time.perf_counter()
    model.learn(args.steps, callback=callbacks)
    total = time.perf_counter() - began
    final = agents.evaluate(model, test)
    return {
        "suite": suite,
        "router": router,
        "seed": seed,
        "steps": int(model.num_timesteps),
        "test_accuracy": final["accuracy"],
        "route_entropy": final["route_entropy"],
        "modules_used": final["modules_used"],
        "routing_map": final["routing_map"],
        # Training alone: the periodic evaluations are timed separately by the callback.
        "seconds": evaluation.history["seconds"][-1],
        "seconds_with_evaluation": total,
        "curve": {key: evaluation.history[key] for key in ("timesteps", "test_accuracy")},
        "staleness": None if staleness is None else staleness.history,
        "majority_rate": majority_rate(test),
        "curve_majority_rate": majority_rate(test, args.eval_episodes),
    }


def majority_rate(env: Any, episodes: int | None = None) -> float:
    """Accuracy of always predicting each task's most frequent test label, on the samples that
    ``agents.evaluate(..., env, episodes)`` routes (evenly spaced ones when ``episodes`` is
    set: the curve points see a different positive share than the whole split)."""
    data = env.unwrapped.dataset.split("test")
    count = len(data.y) if episodes is None else min(episodes, len(data.y))
    chosen = evaluation_indices(len(data.y), count)
    tasks, labels = data.task[chosen], data.y[chosen]
    majority = {t: np.bincount(data.y[data.task == t]).argmax() for t in np.unique(data.task)}
    return float(np.mean([label == majority[t] for t, label in zip(tasks, labels, strict=True)]))


def mean_std(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` (just the value for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table, one row per (suite, router), mean ± std over seeds."""
    lines = [
        "| suite | router | test accuracy | route entropy | modules used | wall time (s) "
        "| replayed routes whose reward changed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for suite in dict.fromkeys(r["suite"] for r in results):
        for router in dict.fromkeys(r["router"] for r in results):
            runs = [r for r in results if r["suite"] == suite and r["router"] == router]
            if not runs:
                continue
            stale = [r["staleness"]["reward_changed"][-1] for r in runs if r["staleness"]]
            lines.append(
                f"| {suite} | {router} | {mean_std([r['test_accuracy'] for r in runs])} "
                f"| {mean_std([r['route_entropy'] for r in runs], 2)} "
                f"| {mean_std([r['modules_used'] for r in runs], 1)} "
                f"| {mean_std([r['seconds'] for r in runs], 0)} "
                f"| {mean_std(stale) if stale else '-'} |"
            )
    majority = {r["suite"]: r["majority_rate"] for r in results}
    steps = sorted({r["steps"] for r in results})
    lines.append("")
    lines.append(
        "Majority rate: "
        + ", ".join(f"{suite} {rate:.3f}" for suite, rate in majority.items())
        + f". Environment steps per run: {', '.join(map(str, steps))}."
    )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], out: str) -> list[str]:
    """``learning_curves.png`` and, with DQN runs, ``replay_staleness.png``."""
    suites = list(dict.fromkeys(r["suite"] for r in results))
    figure, axes = plt.subplots(1, len(suites), figsize=(6 * len(suites), 4), squeeze=False)
    for axis, suite in zip(axes[0], suites, strict=True):
        for router in dict.fromkeys(r["router"] for r in results):
            runs = [r for r in results if r["suite"] == suite and r["router"] == router]
            if not runs:
                continue
            length = min(len(r["curve"]["timesteps"]) for r in runs)
            steps = runs[0]["curve"]["timesteps"][:length]
            accuracy = np.mean([r["curve"]["test_accuracy"][:length] for r in runs], axis=0)
            axis.plot(steps, accuracy, marker="o", markersize=3, label=router)
        majority = runs[0]["curve_majority_rate"]
        axis.axhline(majority, color="grey", linestyle=":", label="majority label")
        axis.set_title(f"{suite}: test accuracy (greedy)")
        axis.set_xlabel("environment steps")
        axis.legend(fontsize=8)
    figure.tight_layout()
    paths = [os.path.join(out, "learning_curves.png")]
    figure.savefig(paths[0], dpi=120)
    plt.close(figure)

    dqn = [r for r in results if r["staleness"]]
    if dqn:
        figure, axes = plt.subplots(1, 2, figsize=(12, 4))
        for run in dqn:
            label = f"{run['suite']} {run['router']} seed {run['seed']}"
            history = run["staleness"]
            axes[0].plot(history["timesteps"], history["reward_changed"], marker="o", label=label)
            axes[1].plot(history["timesteps"], history["age"], marker="o", label=label)
        axes[0].set_title("buffered routes whose final reward changed")
        axes[1].set_title("age of buffered routes (module updates)")
        for axis in axes:
            axis.set_xlabel("environment steps")
            axis.legend(fontsize=7)
        figure.tight_layout()
        paths.append(os.path.join(out, "replay_staleness.png"))
        figure.savefig(paths[-1], dpi=120)
        plt.close(figure)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, train every (suite, router, seed), write the table and plots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30_000, help="environment steps per run")
    parser.add_argument("--seeds", type=parse_seeds, default="1", help=SEEDS_HELP)
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--routers", nargs="+", default=list(ROUTERS), choices=list(ROUTERS))
    parser.add_argument("--num-envs", type=int, default=8, help="routes in flight at once")
    parser.add_argument(
        "--n-steps", type=int, default=256, help="PPO / MaskablePPO steps per env per update"
    )
    parser.add_argument("--small-buffer", type=int, default=1000, help="small DQN buffer size")
    parser.add_argument("--points", type=int, default=10, help="evaluations per learning curve")
    parser.add_argument(
        "--eval-episodes", type=int, default=600, help="test routes per curve point"
    )
    parser.add_argument("--out", default="runs/sb3_routers", help="output folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the machines this runs on are shared; one core per run
    os.makedirs(args.out, exist_ok=True)

    results = []
    for suite in args.suites:
        for router in args.routers:
            for seed in args.seeds:
                result = run_one(suite, router, seed, args)
                results.append(result)
                print(
                    f"{suite:>9} {router:>16} seed {seed}: test accuracy "
                    f"{result['test_accuracy']:.3f} in {result['seconds']:.0f} s",
                    flush=True,
                )
    text = table(results)
    print()
    print(text)
    with open(os.path.join(args.out, "sb3_routers.md"), "w") as handle:
        handle.write(text + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    for path in plot(results, args.out):
        print("wrote", path)


if __name__ == "__main__":
    main()
