"""``routing-env report``: the ``001`` Table 2 comparison on the offline suites, as REPORT.md.

Runs routers and non-routed baselines (:data:`REPORT_METHODS`) with several seeds on every
offline suite (DigitsMTL, MNIST1D-MTL, SyntheticMTL, and FashionMTL when Debian's files are
installed), all in one grid (:mod:`routing_env.experiments.grid`), and writes ``REPORT.md``:
per suite the results table and figures of ``routing-env compare``, then, for each claim of
``001`` section 4 (:data:`CLAIMS`), whether our runs support it, with the numbers. A claim
"A beats B" is *supported* on a suite when the 95% confidence interval of the difference of
mean test accuracies (Welch's t, over seeds) lies above zero, *contradicted* when it lies
below, and *not resolved* otherwise.

The budgets (training samples per run, :data:`SUITE_BUDGETS`) are chosen so that the whole
report with three seeds fits in 30 minutes on a 2-core machine; ``--budget-scale`` multiplies
them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.training import jsonable
from routing_env.experiments.arguments import HelpFormatter, plain
from routing_env.experiments.compare import progress_printer, summarize, write_comparison
from routing_env.experiments.grid import add_grid_arguments, run_grid
from routing_env.experiments.runs import RunSpec, check_methods

#: Methods of the report and what ``001`` calls them.
REPORT_METHODS: dict[str, str] = {
    "wpl": "routing-all-fc: per-task WPL, tabular (001 fig. 4-8)",
    "q": "per-task Q-learning, tabular (001 fig. 4)",
    "reinforce": "per-task REINFORCE, tabular (vanilla PG, 001 fig. 4)",
    "reinforce-approx": "single agent REINFORCE, MLP (routing-all-fc single agent, 001 fig. 5)",
    "task-specific-1-fc": "shared layers, one last layer per task (001 fig. 6-8)",
    "task-specific-all-fc": "one network per task (001 fig. 6-8)",
    "cross-stitch": "cross-stitch network (Misra et al. 2016; 001 fig. 6-8)",
    "soft-mixture-all-fc": "softmax mixture of all modules (001 fig. 5, 8)",
    "noisy-top-k": "noisy top-k gating, k annealed (002 sec. 2.1)",
}

#: Routers that run through the vector env (an MLP router on one sample at a time is slow);
#: the tabular routers keep the single-sample env of ``routing-env train``.
VECTOR_ROUTERS = {"reinforce-approx": 16}

#: Training samples per run on each suite.
SUITE_BUDGETS: dict[str, int] = {
    "digits-mtl": 100_000,
    "mnist1d-mtl": 100_000,
    "synthetic-mtl": 30_000,
    "fashion-mtl": 30_000,
}


@dataclass(frozen=True)
class Claim:
    """A claim of ``001``: method ``better`` reaches a higher test accuracy than ``worse``."""

    text: str
    source: str
    better: str
    worse: str


CLAIMS = (
    Claim(
        "routing beats task-specific-all-fc", "001 sec. 4, fig. 6-8", "wpl", "task-specific-all-fc"
    ),
    Claim("routing beats task-specific-1-fc", "001 sec. 4, fig. 6-8", "wpl", "task-specific-1-fc"),
    Claim("routing beats cross-stitch", "001 sec. 4, fig. 6-8", "wpl", "cross-stitch"),
    Claim("routing beats the soft mixture", "001 sec. 4, fig. 5", "wpl", "soft-mixture-all-fc"),
    Claim("WPL beats Q-learning", "001 sec. 4, fig. 4", "wpl", "q"),
    Claim(
        "WPL beats vanilla policy gradient (REINFORCE)", "001 sec. 4, fig. 4", "wpl", "reinforce"
    ),
    Claim("per-task agents beat a single agent", "001 sec. 4, fig. 4-5", "wpl", "reinforce-approx"),
)


def report_suites(include_fashion: bool = True) -> list[str]:
    """The offline suites available here (FashionMTL only when its files are installed)."""
    from routing_env.datasets.suites import available_offline

    suites = ["digits-mtl", "mnist1d-mtl", "synthetic-mtl"]
    if include_fashion and available_offline("fashion-mtl"):
        suites.append("fashion-mtl")
    return suites


def difference_interval(
    better: Sequence[float], worse: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Difference of means and its Welch-t confidence interval ``(difference, low, high)``
    (``nan`` bounds with fewer than two values on a side; zero spread gives a point)."""
    from scipy import stats

    a, b = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    difference = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return difference, math.nan, math.nan
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    spread = math.sqrt(va + vb)
    if spread == 0:
        return difference, difference, difference
    freedom = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, freedom)) * spread
    return difference, difference - half, difference + half


def verdict(low: float, high: float) -> str:
    """``supported`` (interval above 0), ``contradicted`` (below 0) or ``not resolved``."""
    if math.isnan(low):
        return "not resolved (one seed)"
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "not resolved"


def judge_claims(
    summary: Sequence[Mapping[str, Any]], claims: Sequence[Claim] = CLAIMS
) -> list[dict[str, Any]]:
    """Each claim on each suite where both methods ran: the two accuracies, the difference
    with its 95% interval, and the verdict."""
    rows = []
    by_key = {(row["suite"], row["method"]): row for row in summary}
    for claim in claims:
        for suite in dict.fromkeys(row["suite"] for row in summary):
            better, worse = by_key.get((suite, claim.better)), by_key.get((suite, claim.worse))
            if better is None or worse is None:
                continue
            difference, low, high = difference_interval(better["accuracies"], worse["accuracies"])
            rows.append(
                {
                    "claim": claim.text,
                    "source": claim.source,
                    "suite": suite,
                    "better": better["accuracy"],
                    "worse": worse["accuracy"],
                    "difference": difference,
                    "low": low,
                    "high": high,
                    "verdict": _with_floor(verdict(low, high), better, worse),
                    "majority_rate": better["majority_rate"],
                }
            )
    return rows


def _with_floor(text: str, better: Mapping[str, Any], worse: Mapping[str, Any]) -> str:
    """Say so when neither method left the majority rate (nothing to compare yet)."""
    floor = better["majority_rate"] + 1e-3
    if text == "not resolved" and max(better["accuracy"], worse["accuracy"]) <= floor:
        return "not resolved (both at the majority rate)"
    return text


def claims_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The claim verdicts as a markdown table (accuracies in %)."""
    lines = [
        "| claim | source | suite | A (%) | B (%) | A - B (95% CI, points) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        interval = (
            ""
            if math.isnan(row["low"])
            else f" [{100 * row['low']:+.2f}, {100 * row['high']:+.2f}]"
        )
        lines.append(
            f"| {row['claim']} | {row['source']} | {row['suite']} | {100 * row['better']:.2f} "
            f"| {100 * row['worse']:.2f} | {100 * row['difference']:+.2f}{interval} "
            f"| {row['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def collapse_table(
    summary: Sequence[Mapping[str, Any]], per_task: str = "wpl", single: str = "reinforce-approx"
) -> str:
    """Per suite, the test accuracy, selection entropy and modules in use of the per-task and
    the single-agent router (markdown; suites where either is missing are left out)."""
    by_key = {(row["suite"], row["method"]): row for row in summary}
    lines = [
        "| suite | router | test accuracy (%) | route entropy (nats) | modules used |",
        "| --- | --- | --- | --- | --- |",
    ]
    for suite in dict.fromkeys(row["suite"] for row in summary):
        pair = [by_key.get((suite, per_task)), by_key.get((suite, single))]
        if None in pair:
            continue
        for row in pair:
            lines.append(
                f"| {suite} | {row['method']} | {100 * row['accuracy']:.2f} "
                f"| {row['route_entropy']:.3f} | {row['modules_used']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def report(
    out_dir: str | os.PathLike,
    seeds: int | Sequence[int] = 3,
    suites: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    budget_scale: float = 1.0,
    workers: int = 2,
    ray_address: str | None = None,
    points: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the report's grid and write ``REPORT.md`` (and one folder of figures per suite).

    Args:
        out_dir: output folder.
        seeds: a number of seeds (``0 .. seeds-1``) or the seeds themselves, per method and
            suite.
        suites: default :func:`report_suites`.
        methods: default all of :data:`REPORT_METHODS`.
        budget_scale: multiplies :data:`SUITE_BUDGETS` (other suites: 30,000 samples).
        workers: parallel runs; ray_address: run on Ray
            (:func:`routing_env.experiments.grid.run_grid`).
        points: evaluations per run.
        progress: print a line as each run finishes.

    Returns:
        ``{"summary", "claims", "records", "budgets", "seconds", "path"}``; all but ``path``
        are also written to ``results.json``.
    """
    suites = list(suites or report_suites())
    methods = list(methods or REPORT_METHODS)
    check_methods(methods)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError(f"report needs at least one seed, got {seeds!r}")
    if budget_scale <= 0:
        raise ValueError(f"budget_scale must be positive, got {budget_scale}")
    out = os.fspath(out_dir)
    budgets = {
        suite: max(points, int(SUITE_BUDGETS.get(suite, 30_000) * budget_scale)) for suite in suites
    }
    specs = [
        RunSpec(
            method=method,
            suite=suite,
            seed=seed,
            budget=budgets[suite],
            points=points,
            settings={"num_envs": VECTOR_ROUTERS[method]} if method in VECTOR_ROUTERS else {},
            out_dir=os.path.join(out, suite, "runs", method, f"seed{seed}"),
        )
        for suite in suites
        for seed in seed_list
        for method in methods
    ]
    began = time.perf_counter()
    records = run_grid(
        specs,
        workers=workers,
        ray_address=ray_address,
        on_result=progress_printer() if progress else None,
    )
    seconds = time.perf_counter() - began
    summary = []
    figures: dict[str, list[str]] = {}
    for suite in suites:
        mine = [r for r in records if r["suite"] == suite]
        rows = summarize(mine)
        summary.extend(rows)
        figures[suite] = write_comparison(
            mine, rows, os.path.join(out, suite), title=f"{suite}, {budgets[suite]} samples per run"
        )
    claims = judge_claims(summary)
    path = os.path.join(out, "REPORT.md")
    with open(path, "w") as handle:
        handle.write(
            _markdown(summary, claims, figures, out, budgets, seed_list, methods, seconds, workers)
        )
    result = {
        "summary": summary,
        "claims": claims,
        "records": records,
        "budgets": budgets,
        "seconds": seconds,
    }
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(result, handle, indent=1, default=jsonable)
    return {**result, "path": path}


def _markdown(
    summary: Sequence[Mapping[str, Any]],
    claims: Sequence[Mapping[str, Any]],
    figures: Mapping[str, Sequence[str]],
    out: str,
    budgets: Mapping[str, int],
    seeds: Sequence[int],
    methods: Sequence[str],
    seconds: float,
    workers: int,
) -> str:
    from routing_env.experiments.compare import results_table
    from routing_env.experiments.runs import env_settings

    settings = env_settings({})
    lines = [
        "# routing-env report: `001` Table 2 on the offline suites",
        "",
        f"Generated by `routing-env report` in {seconds / 60:.1f} minutes with {workers} worker "
        f"processes on {platform.machine()} ({os.cpu_count()} CPUs), seeds "
        f"{', '.join(str(seed) for seed in seeds)}.",
        "",
        "Every method trains on the same suite data for the same number of samples, with the "
        f"module settings of `routing-env train` ({_settings_text(settings)}; the baselines use "
        "the same learning rate and batch size); test accuracy is measured on the whole test "
        "split, greedy routes for the routers. Routers: 3 routed layers of one module per task, "
        "hidden size 64.",
        "",
        "Methods:",
        "",
        *[f"* `{m}`: {REPORT_METHODS.get(m, m)}" for m in methods],
        "",
        "## Claims of `001`",
        "",
        'A claim "A beats B" is *supported* on a suite when the 95% confidence interval of '
        "the difference of mean test accuracies (Welch's t over seeds) lies above zero, "
        "*contradicted* when it lies below, *not resolved* otherwise. `001` measured on "
        "MNIST-MTL, MIN-MTL and CIFAR-MTL with a SimpleConvNet trunk (its Table 2, MNIST-MTL: "
        "routing-all-fc 99%, task-specific-all-fc 96%, task-specific-1-fc 95%, "
        "soft-mixture-all-fc 90%, cross-stitch 90%); ours are smaller, offline suites.",
        "",
        claims_table(claims),
    ]
    tally: dict[str, int] = {}
    for row in claims:
        tally[row["verdict"]] = tally.get(row["verdict"], 0) + 1
    lines += [
        "Verdicts: " + ", ".join(f"{count} {name}" for name, count in sorted(tally.items())),
        "",
        "### Collapse: per-task agents against a single agent",
        "",
        "`001` (fig. 4-5) finds that a single router shared by all tasks learns worse than one "
        "agent per task; `000` 4.3 describes its failure mode, collapse onto few modules. "
        "Selection entropy and modules in use of the greedy routes at the end (mean over seeds):",
        "",
        collapse_table(summary),
    ]
    for suite, paths in figures.items():
        rows = [row for row in summary if row["suite"] == suite]
        lines += [
            f"## {suite} ({budgets[suite]} training samples per run)",
            "",
            f"Majority rate: {100 * rows[0]['majority_rate']:.1f}%.",
            "",
            results_table(rows),
        ]
        for figure in paths:
            if figure.endswith(".png"):
                relative = os.path.relpath(figure, out)
                lines += [f"![{os.path.basename(figure)}]({relative})", ""]
    return "\n".join(lines)


def _settings_text(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in settings.items())


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb to the ``routing-env`` command line."""
    parser = commands.add_parser(
        "report",
        help="001 Table 2 on the offline suites; writes REPORT.md with claim-by-claim verdicts",
        description=plain(__doc__),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", default="runs/report", help="output folder (REPORT.md)")
    parser.add_argument(
        "--suites", default=None, help="comma-separated suites (default: the offline ones)"
    )
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiplies the budgets")
    add_grid_arguments(parser)
    parser.set_defaults(run_verb=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the parsed ``report`` arguments; print the claims table."""
    result = report(
        args.out,
        seeds=args.seeds,
        suites=_names(args.suites),
        methods=_names(args.methods),
        budget_scale=args.budget_scale,
        workers=args.workers,
        ray_address=args.ray_address,
        points=args.points,
    )
    print()
    print(claims_table(result["claims"]))
    print(f"wrote {result['path']} ({result['seconds'] / 60:.1f} minutes)")
    return result


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]
