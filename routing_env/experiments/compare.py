"""``routing-env compare``: several methods, one suite, the same budget and seeds.

Every method (our routers, SB3 routers when installed, the non-routed baselines; see
:mod:`routing_env.experiments.runs`) trains on the same suite, with the same environment and module
settings, for the same number of training samples, once per seed. Writes to ``--out``:

* ``results.md`` and ``results.json``: per method the test accuracy (mean and 95% confidence
  interval over seeds, Student's t), the accuracy of every seed, the interquartile mean of the
  normalised score with its stratified bootstrap interval (rliable,
  :mod:`routing_env.experiments.aggregate`), the selection entropy and modules in use of the
  greedy routes (of the gate, for gated baselines), trainable parameters and training time;
  then the aggregate scores (IQM and mean, with intervals);
* ``performance_profiles.png``: the fraction of runs above each normalised score (rliable;
  with two seeds or more);
* ``learning_curves.png`` (test accuracy against training samples, mean and 95% band),
  ``entropy_curves.png`` (selection entropy against training samples) and
  ``routing_maps.png`` (each router's map at the end, first seed);
* ``runs/<method>/seed<k>/``: each run's ``metrics.csv`` (and TensorBoard events).

Runs go to a local process pool (``--workers``) or to Ray (``--ray-address``), see
:mod:`routing_env.experiments.grid`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.training import jsonable
from routing_env.experiments.aggregate import (
    REPS,
    check_bootstrap,
    comparison_section,
    iqm_cell,
    with_scores,
)
from routing_env.experiments.arguments import (
    HelpFormatter,
    add_bootstrap_reps,
    add_device,
    add_episodes,
    plain,
)
from routing_env.experiments.grid import add_grid_arguments, run_grid
from routing_env.experiments.runs import RunSpec, check_methods, method_kind, spec_dict


def compare(
    suite: str,
    methods: Sequence[str],
    seeds: int | Sequence[int],
    budget: int,
    out_dir: str | os.PathLike,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    points: int = 10,
    settings: Mapping[str, Any] | None = None,
    method_settings: Mapping[str, Mapping[str, Any]] | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    bootstrap_reps: int = REPS,
) -> dict[str, Any]:
    """Run ``methods`` x ``seeds`` on ``suite`` and write the comparison to ``out_dir``.

    Args:
        suite: suite name or ``.npz`` path.
        methods: method names (:func:`routing_env.experiments.runs.method_names`).
        seeds: a number of seeds (``0 .. n-1``) or the seeds themselves.
        budget: training samples per run.
        out_dir: output folder.
        workers: parallel runs (local processes, or the CPUs of a local Ray instance).
        ray_address: run on Ray (:func:`routing_env.experiments.grid.run_grid`).
        points: evaluations per run (learning-curve points).
        settings: environment settings shared by every method (:data:`runs.ENV_SETTINGS`).
        method_settings: extra settings per method (router options such as ``lr``, or
            ``num_envs``).
        data_dir: folder of suites read from files.
        progress: print a line as each run finishes.
        bootstrap_reps: bootstrap resamples of the aggregate statistics
            (:mod:`routing_env.experiments.aggregate`).

    Returns:
        ``{"records": [...], "summary": [...], "files": [...]}``; ``summary`` has one row per
        method (see :func:`summarize`).
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("no methods to compare")
    check_methods(methods)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("no seeds")
    check_bootstrap(bootstrap_reps)
    out = os.fspath(out_dir)
    specs = [
        RunSpec(
            method=method,
            suite=suite,
            seed=seed,
            budget=budget,
            points=points,
            settings={**(settings or {}), **(method_settings or {}).get(method, {})},
            data_dir=data_dir,
            out_dir=os.path.join(out, "runs", method, f"seed{seed}"),
        )
        for method in methods
        for seed in seed_list
    ]
    began = time.perf_counter()
    records = run_grid(
        specs,
        workers=workers,
        ray_address=ray_address,
        on_result=progress_printer() if progress else None,
    )
    summary = summarize(records, bootstrap_reps)
    files = write_comparison(
        records, summary, out, f"{suite}, {budget} samples per run", bootstrap_reps
    )
    payload = {
        "suite": suite,
        "budget": budget,
        "seeds": seed_list,
        "seconds": time.perf_counter() - began,
        "summary": summary,
        "records": records,
        "specs": [spec_dict(spec) for spec in specs],
    }
    files.append(os.path.join(out, "results.json"))
    with open(files[-1], "w") as handle:
        json.dump(payload, handle, indent=1, default=jsonable)
    return {"records": records, "summary": summary, "files": files}


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval of the mean
    (``nan`` half-width for a single value)."""
    from scipy import stats

    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values")
    mean = float(data.mean())
    if data.size == 1:
        return mean, math.nan
    half = stats.t.ppf(0.5 + level / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size)
    return mean, float(half)


def summarize(
    records: Sequence[Mapping[str, Any]], bootstrap_reps: int = REPS
) -> list[dict[str, Any]]:
    """One row per (suite, method), in first-seen order: ``seeds``, ``accuracy`` (mean),
    ``accuracy_ci`` (95% half-width), ``accuracies`` (per seed), ``route_entropy`` and
    ``modules_used`` (means, ``None`` when the method has none), ``parameters``,
    ``seconds`` (mean training time), ``majority_rate``, and the normalised score's IQM and
    mean with their bootstrap intervals (``score_iqm`` ...,
    :func:`routing_env.experiments.aggregate.with_scores`; ``bootstrap_reps`` resamples)."""
    rows = []
    keys = dict.fromkeys((r["suite"], r["method"]) for r in records)
    for suite, method in keys:
        runs = [r for r in records if r["suite"] == suite and r["method"] == method]
        mean, half = confidence_interval([r["test_accuracy"] for r in runs])
        rows.append(
            {
                "suite": suite,
                "method": method,
                "kind": runs[0]["kind"],
                "seeds": [r["seed"] for r in runs],
                "accuracy": mean,
                "accuracy_ci": half,
                "accuracies": [r["test_accuracy"] for r in runs],
                "route_entropy": _mean_or_none([r.get("route_entropy") for r in runs]),
                "modules_used": _mean_or_none([r.get("modules_used") for r in runs]),
                "parameters": runs[0].get("parameters"),
                "seconds": float(np.mean([r["seconds"] for r in runs])),
                "majority_rate": runs[0]["majority_rate"],
            }
        )
    return with_scores(rows, records, bootstrap_reps)


def results_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a markdown table (accuracies in %; the normalised score's IQM, see
    :mod:`routing_env.experiments.aggregate`)."""
    lines = [
        "| method | kind | test accuracy (%, mean ± 95% CI) | per seed "
        "| normalised score IQM (95% CI) | route entropy (nats) | modules used "
        "| seconds per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary:
        accuracy = f"{100 * row['accuracy']:.2f}"
        if not math.isnan(row["accuracy_ci"]):
            accuracy += f" ± {100 * row['accuracy_ci']:.2f}"
        seeds = ", ".join(f"{100 * a:.1f}" for a in row["accuracies"])
        lines.append(
            f"| {row['method']} | {row['kind']} | {accuracy} | {seeds} | {iqm_cell(row)} "
            f"| {_fmt(row['route_entropy'], 3)} | {_fmt(row['modules_used'], 1)} "
            f"| {row['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_comparison(
    records: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    out_dir: str,
    title: str,
    bootstrap_reps: int = REPS,
) -> list[str]:
    """``results.md``, the three figures and the performance profile; returns the paths
    written (``bootstrap_reps``: resamples of the aggregate statistics)."""
    from routing_env.experiments.plots import plot_curves, plot_routing_maps

    os.makedirs(out_dir, exist_ok=True)
    files = [os.path.join(out_dir, "results.md")]
    majority = summary[0]["majority_rate"] if summary else None
    with open(files[0], "w") as handle:
        handle.write(f"# Comparison: {title}\n\n")
        if majority is not None:
            handle.write(
                f"Majority rate (each task's most frequent label): {100 * majority:.1f}%\n\n"
            )
        handle.write(results_table(summary))
        section, profile = comparison_section(summary, records, out_dir, bootstrap_reps)
        handle.write(section)
    files += profile
    files.append(
        plot_curves(
            records,
            "test_accuracy",
            os.path.join(out_dir, "learning_curves.png"),
            ylabel="test accuracy (greedy, whole test split)",
            title=title,
            reference=majority,
        )
    )
    with_entropy = [r for r in records if any(v is not None for v in r["curve"]["route_entropy"])]
    if with_entropy:
        files.append(
            plot_curves(
                with_entropy,
                "route_entropy",
                os.path.join(out_dir, "entropy_curves.png"),
                ylabel="selection entropy (nats)",
                title=title,
            )
        )
    maps: dict[str, Any] = {}
    for record in records:
        if record.get("routing_map") is not None and record["method"] not in maps:
            maps[record["method"]] = record["routing_map"]
    if maps:
        extra = next(r["extra_action"] for r in records if r.get("routing_map") is not None)
        files.append(plot_routing_maps(maps, os.path.join(out_dir, "routing_maps.png"), extra))
    return files


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``compare`` verb to the ``routing-env`` command line."""
    parser = commands.add_parser(
        "compare",
        help="several methods, same suite, budget and seeds: table, curves, routing maps",
        description=plain(__doc__),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--suite", default="digits-mtl", help="suite (digits-mtl or DigitsMTL-v0) or .npz path"
    )
    parser.add_argument(
        "--methods",
        default="wpl,q,reinforce,task-specific-all-fc,cross-stitch",
        help="comma-separated method names (routers, sb3-ppo/sb3-a2c/sb3-dqn/"
        "sb3-maskable-ppo, baselines)",
    )
    add_episodes(parser, 100_000, "training routes (samples) per run")
    parser.add_argument("--out", default="runs/compare")
    add_grid_arguments(parser)
    parser.add_argument("--data-dir", default=None, help="folder of suites read from files")
    add_device(parser, "of the baselines")
    add_bootstrap_reps(parser)
    parser.add_argument("--module-lr", type=float, default=None)
    parser.add_argument("--module-batch-size", type=int, default=None)
    parser.add_argument("--num-modules", type=int, default=None)
    parser.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="routes in flight for our routers and SB3 methods (default: 256 for routers, 1 "
        "for the dispatched ones, 16 for SB3; 1 is the single-sample env)",
    )
    parser.set_defaults(run_verb=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the parsed ``compare`` arguments and print the table."""
    settings = {
        key: value
        for key, value in (
            ("module_lr", args.module_lr),
            ("module_batch_size", args.module_batch_size),
            ("num_modules", args.num_modules),
            ("device", args.device),
        )
        if value is not None
    }
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    per_method = {}
    if args.num_envs is not None:
        per_method = {
            m: {"num_envs": args.num_envs} for m in methods if method_kind(m) != "baseline"
        }
    result = compare(
        args.suite,
        methods,
        args.seeds,
        args.episodes,
        args.out,
        workers=args.workers,
        ray_address=args.ray_address,
        points=args.points,
        settings=settings,
        method_settings=per_method,
        data_dir=args.data_dir,
        bootstrap_reps=args.bootstrap_reps,
    )
    print()
    print(results_table(result["summary"]))
    print("wrote " + ", ".join(result["files"]))
    return result


def progress_printer() -> Any:
    """An ``on_result`` callback for :func:`routing_env.experiments.grid.run_grid` that prints
    one line per finished run."""

    def report(done: int, total: int, record: Mapping[str, Any]) -> None:
        print(
            f"[{done}/{total}] {record['method']} seed {record['seed']} on {record['suite']}: "
            f"test accuracy {100 * record['test_accuracy']:.2f}% ({record['seconds']:.0f} s)",
            flush=True,
        )

    return report


def _mean_or_none(values: Sequence[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
