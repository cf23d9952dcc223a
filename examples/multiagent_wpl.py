"""Populations of routers in the multi-agent routing game: which learners share the modules?

One tabular agent per task plays ``routing_game_v0`` on DigitsMTL (and FashionMTL with
``--fashion``): every round each of the ten routers routes one sample of its own task through
the shared modules (``001`` 3.1.2, ``000`` 5.1). Populations: all WPL, all Q-learning, all
REINFORCE, and a mixed one (five WPL routers for tasks 0-4, five Q-learning routers for tasks
5-9). Each population is trained with several seeds; the script prints a table of the final
test accuracy and selection entropy (mean ± std over seeds) and writes, to ``--out``:

* ``table.md`` and ``summary.json``: the table and every run's final figures;
* ``<suite>/accuracy_by_population.png``: mean test accuracy over training per population;
* ``<suite>/<population>/seed<S>/results.json`` for every run, and for the first seed the
  figures of :func:`routing_env.experiments.multiagent_plots.plot_multiagent` (each agent's
  policy at one depth over time, the probability every agent puts on one module, the routing
  map, the path overlap between tasks, selection entropy, per-agent accuracy).

Defaults: the settings of ``routing-env train`` (:mod:`routing_env.settings`): reward ``+-1``,
module lr 0.3, WPL ``lr=0.5`` (in single-agent runs these break the routing symmetry on
DigitsMTL within about 100k routes); Q-learning and REINFORCE with their defaults.
``--episodes`` counts game rounds; each round routes one sample per task (ten on DigitsMTL), so
20,000 rounds give every router 20,000 routes (about a minute per run on one core).

Run: ``python examples/multiagent_wpl.py --episodes 20000 --out runs/multiagent``
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

from agents.multiagent import (  # noqa: E402
    evaluate_multiagent,
    make_population,
    train_multiagent,
    write_multiagent_results,
)
from routing_env import routing_game_v0  # noqa: E402
from routing_env.datasets.suites import FASHION_DIR  # noqa: E402
from routing_env.experiments.arguments import SEEDS_HELP, parse_seeds  # noqa: E402
from routing_env.experiments.multiagent_plots import plot_multiagent  # noqa: E402

POPULATIONS = {
    "wpl": ["wpl"] * 10,
    "q": ["q"] * 10,
    "reinforce": ["reinforce"] * 10,
    "wpl+q": ["wpl"] * 5 + ["q"] * 5,
}
SUITES = {"digits": "digits-mtl", "fashion": "fashion-mtl"}


def run_one(
    suite: str, population: str, seed: int, args: argparse.Namespace, out_dir: str, plots: bool
) -> dict[str, Any]:
    """Train one population with one seed; evaluate on the whole test split."""
    keywords: dict[str, Any] = {"dataset": suite, "reward": args.reward}
    if suite == "fashion-mtl":
        keywords["data_dir"] = args.data_dir
    game = routing_game_v0.parallel_env(**keywords, module_lr=args.module_lr)
    test = routing_game_v0.parallel_env(**keywords, split="test", network=game.network)
    names = POPULATIONS[population]
    if len(names) != game.num_tasks:
        names = (names * game.num_tasks)[: game.num_tasks]
    policies = make_population(names, game, seed=seed, options={"wpl": {"lr": args.wpl_lr}})
    history = train_multiagent(
        policies,
        game,
        args.episodes,
        eval_env=test,
        eval_every=max(1, args.episodes // args.epochs),
        eval_rounds=args.eval_rounds,
        seed=seed,
        progress=not args.no_progress,
    )
    final = evaluate_multiagent(policies, test, rounds=args.final_eval_rounds)
    history["final"] = {
        "test_accuracy": final["accuracy"],
        "per_agent_accuracy": final["per_agent_accuracy"],
        "route_entropy": final["route_entropy"],
        "modules_used": final["modules_used"],
        "routing_map": final["routing_map"],
        "greedy_paths": final["greedy_paths"],
        "path_overlap": final["path_overlap"],
    }
    history["routing_map"][-1] = final["routing_map"]
    history["path_overlap"][-1] = final["path_overlap"]
    run_dir = os.path.join(out_dir, f"seed{seed}")
    write_multiagent_results(history, run_dir)
    if plots:
        plot_multiagent(history, run_dir, depth=0, title=f"{population} on {suite}, seed {seed}")
    by_algorithm: dict[str, list[float]] = {}
    for agent, accuracy in final["per_agent_accuracy"].items():
        by_algorithm.setdefault(history["algorithms"][agent], []).append(accuracy)
    return {
        "suite": suite,
        "population": population,
        "seed": seed,
        "test_accuracy": final["accuracy"],
        "route_entropy": final["route_entropy"],
        "modules_used": final["modules_used"],
        "accuracy_by_algorithm": {k: float(np.mean(v)) for k, v in by_algorithm.items()},
        "routing_map": final["routing_map"],
        "seconds": history["seconds"],
        "curve": {"routes": history["routes"], "accuracy": history["mean_test_accuracy"]},
    }


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values_array = np.asarray(values, dtype=float) * scale
    return f"{values_array.mean():.{digits}f} ± {values_array.std():.{digits}f}"


def table(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown table: one row per suite and population, mean ± std over seeds."""
    measured = (
        "the whole test split"
        if args.final_eval_rounds is None
        else f"{args.final_eval_rounds} test samples per task"
    )
    lines = [
        f"Budget: {args.episodes} rounds per run ({args.episodes} routes per router), "
        f"seeds {args.seeds}, reward {args.reward}, WPL lr {args.wpl_lr}, "
        f"module lr {args.module_lr}; greedy test accuracy on {measured}.",
        "",
        "| suite | population | test accuracy (%) | route entropy (nats) | modules used "
        "| accuracy by algorithm (%) | seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((run["suite"], run["population"]) for run in runs))
    for suite, population in keys:
        group = [r for r in runs if r["suite"] == suite and r["population"] == population]
        algorithms = sorted(group[0]["accuracy_by_algorithm"])
        split = (
            ", ".join(
                f"{name} {_mean_std([r['accuracy_by_algorithm'][name] for r in group], 100, 1)}"
                for name in algorithms
            )
            if len(algorithms) > 1
            else "-"
        )
        lines.append(
            f"| {suite} | {population} "
            f"| {_mean_std([r['test_accuracy'] for r in group], 100)} "
            f"| {_mean_std([r['route_entropy'] for r in group], digits=3)} "
            f"| {_mean_std([r['modules_used'] for r in group], digits=1)} "
            f"| {split} | {np.mean([r['seconds'] for r in group]):.0f} |"
        )
    return "\n".join(lines)


def plot_populations(runs: list[dict[str, Any]], suite: str, out_dir: str) -> str:
    """Mean test accuracy over training per population (band: ± std over seeds)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for population in dict.fromkeys(r["population"] for r in runs if r["suite"] == suite):
        group = [r for r in runs if r["suite"] == suite and r["population"] == population]
        routes = np.asarray(group[0]["curve"]["routes"])
        curves = np.asarray([r["curve"]["accuracy"] for r in group])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        axis.plot(routes, mean, label=population)
        axis.fill_between(routes, mean - std, mean + std, alpha=0.2)
    axis.set(
        xlabel="training routes (all agents)",
        ylabel="mean test accuracy over tasks",
        title=f"routing game on {suite}: populations (mean ± std over seeds)",
    )
    axis.legend()
    figure.tight_layout()
    path = os.path.join(out_dir, "accuracy_by_population.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000, help="game rounds per run")
    parser.add_argument("--seeds", type=parse_seeds, default="3", help=SEEDS_HELP)
    parser.add_argument(
        "--populations", nargs="+", default=list(POPULATIONS), choices=list(POPULATIONS)
    )
    parser.add_argument("--fashion", action="store_true", help="also run FashionMTL")
    parser.add_argument("--data-dir", default=FASHION_DIR, help="Fashion-MNIST IDX files")
    parser.add_argument("--reward", choices=["neg_loss", "correct"], default="correct")
    parser.add_argument("--wpl-lr", type=float, default=0.5)
    parser.add_argument("--module-lr", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=10, help="evaluations during training")
    parser.add_argument(
        "--eval-rounds", type=int, default=50, help="test samples per task, during training"
    )
    parser.add_argument(
        "--final-eval-rounds",
        type=int,
        default=None,
        help="test samples per task at the end (default: the whole test split)",
    )
    parser.add_argument("--out", default="runs/multiagent")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one sample per agent per step: threads only add overhead

    suites = [SUITES["digits"]]
    if args.fashion:
        if not os.path.isdir(args.data_dir):
            parser.error(f"--fashion: no Fashion-MNIST files in {args.data_dir} (see --data-dir)")
        suites.append(SUITES["fashion"])
    runs = []
    start = time.perf_counter()
    for suite in suites:
        for population in args.populations:
            for number, seed in enumerate(args.seeds):
                out_dir = os.path.join(args.out, suite, population)
                run = run_one(suite, population, seed, args, out_dir, plots=number == 0)
                runs.append(run)
                print(
                    f"{suite} {population} seed {seed}: test accuracy "
                    f"{100 * run['test_accuracy']:.2f}%, route entropy "
                    f"{run['route_entropy']:.3f}, {run['seconds']:.0f} s",
                    flush=True,
                )
        plot_populations(runs, suite, os.path.join(args.out, suite))
    text = table(runs, args)
    text += f"\n\nTotal time {time.perf_counter() - start:.0f} s."
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as handle:
        handle.write(text + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump({"settings": vars(args), "runs": runs}, handle, indent=2)
    return runs


if __name__ == "__main__":
    main()
