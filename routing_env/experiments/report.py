"""``routing-env report``: the ``001`` Table 2 comparison on the offline suites, as REPORT.md.

Runs routers and non-routed baselines (:data:`REPORT_METHODS`) with several seeds on every
offline suite (DigitsMTL, MNIST1D-MTL, SyntheticMTL, and FashionMTL when Debian's files are
installed), all in one grid (:mod:`routing_env.experiments.grid`), and writes ``REPORT.md``:
per suite the results table and figures of ``routing-env compare``, then, for each claim of
``001`` section 4 (:data:`CLAIMS`), whether our runs support it, with the numbers. A claim
"A beats B" is *supported* on a suite when the 95% confidence interval of the difference of
mean test accuracies (Welch's t, over seeds) lies above zero, *contradicted* when it lies
below, and *not resolved* otherwise. Next to these per-claim Welch intervals, REPORT.md gives
rliable's aggregate statistics on the normalised score (:mod:`routing_env.experiments.aggregate`):
per suite and pooled across suites the interquartile mean with its stratified bootstrap
interval, the probability of improvement of each claim's pair, and the performance profile.

Runs are measured in epochs (passes over a suite's training split) and evaluated after each,
so that REPORT.md can give ``001`` Table 2's shape (method x epoch 1, 5, 10, 20, 50, 100, as
far as the run goes) beside ``001``'s own MNIST-MTL numbers. ``--scale paper`` (the default, the
committed report) runs five seeds for the epochs of :data:`SCALES`; ``--scale quick`` one epoch;
``--epochs`` sets the epochs of every suite.
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
from routing_env.experiments.aggregate import REPS, check_bootstrap, report_section
from routing_env.experiments.arguments import (
    SEEDS_HELP,
    HelpFormatter,
    UsageError,
    add_bootstrap_reps,
    add_device,
    parse_seeds,
    plain,
)
from routing_env.experiments.compare import progress_printer, summarize, write_comparison
from routing_env.experiments.grid import add_grid_arguments, run_grid
from routing_env.experiments.runs import (
    RunSpec,
    check_methods,
    recorded,
    records_spec,
    spec_dict,
)

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

#: The epochs (passes over a suite's training split) at which ``001`` Table 2 reports test
#: accuracy.
TABLE2_EPOCHS: tuple[int, ...] = (1, 5, 10, 20, 50, 100)

#: ``001`` Table 2, the MNIST-MTL rows (its Figure 8), % test accuracy at :data:`TABLE2_EPOCHS`,
#: under our names for the methods (``001``'s routing-all-fc is per-task tabular WPL).
SEED_MNIST_MTL: dict[str, tuple[int, ...]] = {
    "wpl": (90, 90, 98, 99, 99, 99),
    "task-specific-all-fc": (90, 91, 94, 95, 95, 96),
    "task-specific-1-fc": (90, 90, 91, 92, 93, 95),
    "soft-mixture-all-fc": (90, 90, 90, 90, 90, 90),
    "cross-stitch": (90, 90, 90, 90, 90, 90),
}

#: Our suites set beside ``001``'s MNIST-MTL rows: ten one-vs-rest digit (or garment) tasks with
#: a 90% majority rate, as MNIST-MTL's.
MNIST_LIKE: tuple[str, ...] = ("digits-mtl", "fashion-mtl")

#: Epochs of training per run on each suite, by scale. ``paper`` (for the committed report)
#: reaches ``001``'s Table 2 points up to epoch 50 on DigitsMTL (1M samples per run) and 100 on
#: SyntheticMTL; it is sized from single-run speeds to fit about 90 minutes on a 2-core CPU for
#: the three CPU suites, and has not been timed as a whole yet. ``quick`` is one epoch (CI, a
#: first look). FashionMTL's conv trunk is about 20 times slower per sample on a CPU than the MLP
#: suites, so it is run only when named (``--suites``).
SCALES: dict[str, dict[str, float]] = {
    "paper": {"digits-mtl": 70, "mnist1d-mtl": 25, "synthetic-mtl": 100, "fashion-mtl": 1},
    "quick": {"digits-mtl": 1, "mnist1d-mtl": 1, "synthetic-mtl": 1, "fashion-mtl": 1},
}
#: Epochs on a suite a scale does not name.
OTHER_SUITE_EPOCHS = 5


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
            needed = seeds_to_resolve(better["accuracies"], worse["accuracies"])
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
                    "seeds_needed": needed,
                }
            )
            rows[-1]["reason"] = reason(
                rows[-1],
                min(len(better["accuracies"]), len(worse["accuracies"])),
                claim.better,
                claim.worse,
            )
    return rows


#: Differences of mean test accuracy below this (0.1 points) are too small to matter: a claim
#: that rests on one is "not resolved" however many seeds are run.
NEGLIGIBLE = 1e-3


def seeds_to_resolve(better: Sequence[float], worse: Sequence[float], level: float = 0.95) -> float:
    """Seeds per method at which a difference of the means seen here, with the spreads seen
    here, would have a Welch interval that excludes zero, a lower bound: the smallest ``n`` with
    ``t(n) * sqrt((s_a^2 + s_b^2) / n) < |difference|`` (``t`` at ``2n - 2`` degrees of
    freedom, a lower bound of Welch's); ``inf`` for a zero difference, ``nan`` with fewer than
    two values on a side."""
    from scipy import stats

    a, b = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    if a.size < 2 or b.size < 2:
        return math.nan
    difference = abs(float(a.mean() - b.mean()))
    spread = float(a.var(ddof=1) + b.var(ddof=1))
    if difference == 0:
        return math.inf
    for n in range(2, 10_001):
        if stats.t.ppf(0.5 + level / 2, 2 * n - 2) * math.sqrt(spread / n) < difference:
            return float(n)
    return math.inf


def reason(row: Mapping[str, Any], seeds: int, better: str, worse: str) -> str:
    """Why a claim got its verdict, in one sentence (``row`` from :func:`judge_claims`)."""
    points = 100 * row["difference"]
    interval = f"[{100 * row['low']:+.2f}, {100 * row['high']:+.2f}]"
    verdict_text = row["verdict"]
    if verdict_text == "supported":
        return (
            f"{better} is ahead by {points:.2f} points and the 95% interval {interval} lies "
            f"above zero over {seeds} seeds."
        )
    if verdict_text == "contradicted":
        return (
            f"{worse} is ahead by {-points:.2f} points and the 95% interval {interval} lies "
            f"below zero over {seeds} seeds."
        )
    if verdict_text.startswith("not resolved (both"):
        return (
            f"neither left the majority rate ({100 * row['majority_rate']:.1f}%): there is "
            "nothing to compare yet at this budget, and more seeds would not change that."
        )
    if verdict_text.startswith("not resolved (one"):
        return "one seed gives no interval."
    needed = row["seeds_needed"]
    if abs(row["difference"]) < NEGLIGIBLE or not math.isfinite(needed):
        return (
            f"the two are within {abs(points):.2f} points of each other ({interval}): a "
            "difference this small does not matter, and more seeds would only narrow the "
            "interval around it."
        )
    if needed <= seeds:
        return (
            f"the difference {points:+.2f} points is inside the seeds' spread {interval}, "
            "which only just reaches zero: a few more seeds would likely resolve it."
        )
    return (
        f"the difference {points:+.2f} points is inside the seeds' spread {interval}; at this "
        f"spread at least {needed:.0f} seeds per method would be needed to resolve it."
    )


def _with_floor(text: str, better: Mapping[str, Any], worse: Mapping[str, Any]) -> str:
    """Say so when neither method left the majority rate (nothing to compare yet)."""
    floor = better["majority_rate"] + 1e-3
    if text == "not resolved" and max(better["accuracy"], worse["accuracy"]) <= floor:
        return "not resolved (both at the majority rate)"
    return text


def claims_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The claim verdicts as a markdown table (accuracies in %)."""
    lines = [
        "| claim | source | suite | A (%) | B (%) | A - B (95% CI, points) | verdict | why |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
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
            f"| {row['verdict']} | {row.get('reason', '')} |"
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


def suite_epochs(suites: Sequence[str], scale: str, epochs: float | None) -> dict[str, float]:
    """Epochs per suite: ``epochs`` for every suite if given, else the scale's."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if epochs is not None and not epochs > 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    chosen = SCALES[scale]
    return {
        suite: float(epochs if epochs is not None else chosen.get(suite, OTHER_SUITE_EPOCHS))
        for suite in suites
    }


def epoch_points(epochs: float) -> list[int]:
    """The whole epochs evaluated: :data:`TABLE2_EPOCHS` up to ``epochs`` and the last whole
    epoch (none below one epoch)."""
    last = math.floor(epochs)
    return sorted({e for e in TABLE2_EPOCHS if e <= last} | ({last} if last >= 1 else set()))


def epoch_table(
    records: Sequence[Mapping[str, Any]],
    train_size: int,
    epochs: Sequence[int],
    seed_rows: Mapping[str, Sequence[int]] | None = None,
) -> str:
    """``001`` Table 2's shape for one suite: per method the mean test accuracy (%) over seeds
    after each of ``epochs`` passes over the training split (``train_size`` samples), ± the
    standard deviation over seeds; with ``seed_rows``, ``001``'s own numbers for the methods it
    has, in the row below ours."""
    methods = list(dict.fromkeys(record["method"] for record in records))
    header = "| method | " + " | ".join(f"epoch {e}" for e in epochs) + " |"
    lines = [header, "| --- |" + " --- |" * len(epochs)]
    for method in methods:
        mine = [record for record in records if record["method"] == method]
        cells = []
        for epoch in epochs:
            values = [_accuracy_at(record, epoch * train_size) for record in mine]
            values = [v for v in values if v is not None]
            cells.append(
                f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}" if values else "-"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
        if seed_rows and method in seed_rows:
            seed = dict(zip(TABLE2_EPOCHS, seed_rows[method], strict=True))
            cells = [str(seed[e]) if e in seed else "-" for e in epochs]
            lines.append("| *001, MNIST-MTL* | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _accuracy_at(record: Mapping[str, Any], samples: int) -> float | None:
    """The test accuracy of ``record``'s curve at ``samples`` training samples (``None`` if it
    was not evaluated there). A baseline evaluates after the optimizer step that reaches an
    epoch's end, up to one batch past it, hence the tolerance."""
    curve = record["curve"]
    tolerance = max(64, samples // 100)
    for count, accuracy in zip(curve["samples"], curve["test_accuracy"], strict=True):
        if abs(int(count) - samples) <= tolerance:
            return float(accuracy)
    return None


def _suite_settings(
    settings: Mapping[str, Any], anneal_epochs: float | None, train_size: int
) -> dict[str, Any]:
    """A suite's run settings: ``settings``, with the annealing period in samples."""
    if anneal_epochs is None:
        return dict(settings)
    return {**settings, "module_lr_anneal_every": max(1, round(anneal_epochs * train_size))}


def report(
    out_dir: str | os.PathLike,
    seeds: int | Sequence[int] = 5,
    suites: Sequence[str] | None = None,
    suite_seeds: Mapping[str, int | Sequence[int]] | None = None,
    methods: Sequence[str] | None = None,
    scale: str = "paper",
    epochs: float | None = None,
    settings: Mapping[str, Any] | None = None,
    anneal_epochs: float | None = None,
    workers: int = 2,
    ray_address: str | None = None,
    progress: bool = True,
    bootstrap_reps: int = REPS,
) -> dict[str, Any]:
    """Run the report's grid and write ``REPORT.md`` (and one folder of figures per suite).

    Every run is evaluated on the whole test split after each epoch; REPORT.md gives, per
    suite, ``001`` Table 2's shape (method x epoch, :func:`epoch_table`), the table and
    figures of ``routing-env compare`` at the last epoch, and the claims judged there. Runs
    keep their ``record.json`` and checkpoints under ``out_dir``: a report killed halfway
    continues where it stopped when run again with the same arguments.

    Args:
        out_dir: output folder.
        seeds: a number of seeds (``0 .. seeds-1``) or the seeds themselves, per method and
            suite.
        suites: default :func:`report_suites` (the CPU suites; FashionMTL only when named).
        suite_seeds: seeds (a number or a list, as ``seeds``) for some of ``suites``, over
            ``seeds``: more seeds where runs are cheap and differences small. Pooled
            statistics use the seeds every suite ran.
        methods: default all of :data:`REPORT_METHODS`.
        scale: ``"paper"`` or ``"quick"`` (:data:`SCALES`): epochs per suite.
        epochs: epochs for every suite, over the scale's (a fraction of one is allowed: then
            only the end is evaluated).
        settings: environment settings for every run (:data:`~routing_env.experiments.runs.
            ENV_SETTINGS`, e.g. ``collaboration_reward``, the module settings the baselines
            use too); default the environment's (those of ``routing-env train``).
        anneal_epochs: divide the module learning rate (routers' modules and baselines alike)
            by 10 every this many epochs of each suite (``001`` section 4: 20); default
            constant.
        workers: parallel runs; ray_address: run on Ray
            (:func:`routing_env.experiments.grid.run_grid`).
        progress: print a line as each run finishes.
        bootstrap_reps: bootstrap resamples of the aggregate statistics
            (:mod:`routing_env.experiments.aggregate`).

    Returns:
        ``{"summary", "claims", "aggregates", "records", "budgets", "epochs", "seconds",
        "path"}`` (``aggregates``: per suite and pooled IQM rows and probabilities of
        improvement, :func:`routing_env.experiments.aggregate.report_section`); all but
        ``path`` are also written to ``results.json``.
    """
    from routing_env.env import resolve_dataset

    suites = list(suites or report_suites(include_fashion=False))
    methods = list(methods or REPORT_METHODS)
    check_methods(methods)
    common_seeds = parse_seeds(seeds)
    seeds_of = _seeds_per_suite(suites, common_seeds, suite_seeds or {})
    check_bootstrap(bootstrap_reps)
    settings = dict(settings or {})
    if anneal_epochs is not None and not anneal_epochs > 0:
        raise ValueError(f"anneal_epochs must be positive, got {anneal_epochs}")
    out = os.fspath(out_dir)
    epochs_of = suite_epochs(suites, scale, epochs)
    train_sizes = {suite: len(resolve_dataset(suite).split("train").y) for suite in suites}
    budgets = {suite: max(1, round(epochs_of[suite] * train_sizes[suite])) for suite in suites}
    specs = [
        RunSpec(
            method=method,
            suite=suite,
            seed=seed,
            budget=budgets[suite],
            points=max(1, math.floor(epochs_of[suite])),
            settings=_suite_settings(settings, anneal_epochs, train_sizes[suite]),
            out_dir=os.path.join(out, suite, "runs", method, f"seed{seed}"),
        )
        for suite in suites
        for seed in seeds_of[suite]
        for method in methods
    ]
    known = _earlier_records(out)
    found = [recorded(spec) or _known(known, spec) for spec in specs]
    missing = [spec for spec, record in zip(specs, found, strict=True) if record is None]
    made = len(missing)
    began = time.perf_counter()
    new_records = iter(
        run_grid(
            missing,
            workers=workers,
            ray_address=ray_address,
            on_result=progress_printer() if progress else None,
        )
    )
    records = [record if record is not None else next(new_records) for record in found]
    seconds = time.perf_counter() - began
    invocations = [
        *_earlier_invocations(out),
        {
            "seconds": seconds,
            "runs_made": made,
            "runs_read": len(specs) - made,
            "suites": suites,
            "seeds": seeds_text(seeds_of, common_seeds),
            "workers": workers,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    ]
    summary = []
    figures: dict[str, list[str]] = {}
    tables: dict[str, str] = {}
    for suite in suites:
        mine = [r for r in records if r["suite"] == suite]
        rows = summarize(mine, bootstrap_reps)
        summary.extend(rows)
        figures[suite] = write_comparison(
            mine,
            rows,
            os.path.join(out, suite),
            title=f"{suite}, {epochs_of[suite]:g} epochs ({budgets[suite]:,} samples) per run",
            bootstrap_reps=bootstrap_reps,
        )
        tables[suite] = epoch_table(
            mine,
            train_sizes[suite],
            epoch_points(epochs_of[suite]),
            SEED_MNIST_MTL if suite in MNIST_LIKE else None,
        )
    claims = judge_claims(summary)
    pairs = [(claim.better, claim.worse) for claim in CLAIMS]
    aggregates = report_section(summary, records, pairs, out, bootstrap_reps)
    path = os.path.join(out, "REPORT.md")
    context = {
        "out": out,
        "budgets": budgets,
        "epochs": epochs_of,
        "seeds": seeds_of,
        "common_seeds": common_seeds,
        "methods": methods,
        "seconds": seconds,
        "invocations": invocations,
        "run_minutes": {
            suite: sum(r["wall_seconds"] for r in records if r["suite"] == suite) / 60
            for suite in suites
        },
        "workers": workers,
        "scale": scale,
        "settings": settings,
        "anneal_epochs": anneal_epochs,
        "aggregates": aggregates["markdown"],
    }
    with open(path, "w") as handle:
        handle.write(_markdown(summary, claims, figures, tables, context))
    result = {
        "summary": summary,
        "claims": claims,
        "aggregates": {key: aggregates[key] for key in ("rows", "improvement")},
        "records": records,
        "budgets": budgets,
        "epochs": epochs_of,
        "seeds": seeds_of,
        "seconds": seconds,
        "invocations": invocations,
    }
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(result, handle, indent=1, default=jsonable)
    return {**result, "path": path}


def _earlier_records(out: str) -> dict[str, dict[str, Any]]:
    """The run records in ``out``'s ``results.json``, by spec (:func:`_spec_key`): a committed
    report keeps them there, not its runs' folders (``runs/`` is not committed), and a report
    extending it reads them instead of running them again."""
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        earlier = json.load(handle)
    return {
        json.dumps(record["spec"], sort_keys=True): record
        for record in earlier.get("records", [])
        if "spec" in record
    }


def _spec_key(spec: RunSpec) -> str:
    return json.dumps(spec_dict(spec), sort_keys=True)


def _known(known: Mapping[str, dict[str, Any]], spec: RunSpec) -> dict[str, Any] | None:
    """The earlier record of ``spec`` among ``known`` (:func:`_earlier_records`), if it is a
    run of ``spec`` as it would run now (:func:`~routing_env.experiments.runs.records_spec`)."""
    record = known.get(_spec_key(spec))
    return record if record is not None and records_spec(record, spec) else None


def _earlier_invocations(out: str) -> list[dict[str, Any]]:
    """The invocations of ``routing-env report`` that wrote ``out``'s ``results.json`` before
    (a resumed or extended report keeps the time of the runs it reads from them)."""
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        earlier = json.load(handle)
    if "invocations" in earlier:
        return list(earlier["invocations"])
    suites = list(dict.fromkeys(record["suite"] for record in earlier.get("records", [])))
    return [
        {
            "seconds": earlier.get("seconds", math.nan),
            "runs_made": len(earlier.get("records", [])),
            "runs_read": 0,
            "suites": suites,
            "finished": None,
        }
    ]


def _invocations_text(invocations: Sequence[Mapping[str, Any]], workers: int) -> str:
    """One sentence per invocation: its time, its suites (and seeds, where the log has them)
    and the runs it made and read."""
    parts = []
    for number, one in enumerate(invocations, 1):
        seeds = f"; {one['seeds']}" if one.get("seeds") else ""
        when = f", finished {one['finished']}" if one.get("finished") else ""
        parts.append(
            f"{number}. {one['seconds'] / 60:.1f} minutes with {one.get('workers', workers)} "
            f"worker processes: {one['runs_made']} runs made, {one['runs_read']} read from "
            f"earlier records ({', '.join(one['suites'])}{seeds}{when})."
        )
    return "\n".join(parts)


def _markdown(
    summary: Sequence[Mapping[str, Any]],
    claims: Sequence[Mapping[str, Any]],
    figures: Mapping[str, Sequence[str]],
    tables: Mapping[str, str],
    context: Mapping[str, Any],
) -> str:
    from routing_env.experiments.compare import results_table
    from routing_env.experiments.runs import env_settings

    out, epochs, budgets = context["out"], context["epochs"], context["budgets"]
    settings = env_settings(context["settings"])
    extra = {k: v for k, v in context["settings"].items() if k not in settings}
    lines = [
        "# routing-env report: `001` Table 2 on the offline suites",
        "",
        f"Generated by `routing-env report --scale {context['scale']}` on "
        f"{platform.machine()} ({os.cpu_count()} CPUs), "
        f"{seeds_text(context['seeds'], context['common_seeds'])}, in these invocations (a "
        "report continues from the records of the runs an earlier one made):",
        "",
        _invocations_text(context["invocations"], context["workers"]),
        "",
        *_more_seeds_text(context["seeds"], context["common_seeds"]),
        "The runs' own wall time, summed over runs per suite (set-up and evaluations "
        "included): "
        + ", ".join(f"{suite} {m:.1f} min" for suite, m in context["run_minutes"].items())
        + ".",
        "",
        "Every method trains on the same suite data for the same number of samples, with the "
        f"module settings of `routing-env train` ({_settings_text({**settings, **extra})}; the "
        "baselines use the same learning rate and batch size); test accuracy is measured on the "
        "whole test split after every epoch (a pass over the training split), greedy routes for "
        "the routers, which train on the vector env (256 routes in flight). Routers: 3 routed "
        "layers of one module per task, hidden size 64. Epochs per run: "
        + ", ".join(f"{suite} {epochs[suite]:g} ({budgets[suite]:,} samples)" for suite in epochs)
        + ". `001` anneals its learning rate (divided by 10 every 20 epochs) and uses the "
        "collaboration reward 0.3 on MNIST-MTL; this report "
        + (
            f"divides the module learning rate by 10 every {context['anneal_epochs']:g} epochs"
            if context["anneal_epochs"] is not None
            else "keeps the learning rate constant"
        )
        + " and uses "
        + (
            f"the collaboration reward {context['settings']['collaboration_reward']:g}"
            if "collaboration_reward" in context["settings"]
            else "no collaboration reward"
        )
        + " (our defaults were chosen by measurement: routing_env/settings.py).",
        "",
        "Methods:",
        "",
        *[f"* `{m}`: {REPORT_METHODS.get(m, m)}" for m in context["methods"]],
        "",
        _fashion_text(context),
        "",
        "## Claims of `001`",
        "",
        'A claim "A beats B" is *supported* on a suite when the 95% confidence interval of '
        "the difference of mean test accuracies at the last epoch (Welch's t over seeds) lies "
        "above zero, *contradicted* when it lies below, *not resolved* otherwise. `001` "
        "measured on MNIST-MTL, MIN-MTL and CIFAR-MTL with a SimpleConvNet trunk; ours are "
        "smaller, offline suites.",
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
        context["aggregates"],
    ]
    for suite, paths in figures.items():
        rows = [row for row in summary if row["suite"] == suite]
        lines += [
            f"## {suite} ({epochs[suite]:g} epochs, {budgets[suite]:,} training samples per run)",
            "",
            f"Majority rate: {100 * rows[0]['majority_rate']:.1f}%.",
            "",
            "Test accuracy (%) by epoch, mean ± standard deviation over seeds (`001` Table 2's "
            "shape"
            + ("; in italics `001`'s MNIST-MTL numbers" if suite in MNIST_LIKE else "")
            + "):",
            "",
            tables[suite],
            "At the last epoch:",
            "",
            results_table(rows),
        ]
        for figure in paths:
            if figure.endswith(".png"):
                relative = os.path.relpath(figure, out)
                lines += [f"![{os.path.basename(figure)}]({relative})", ""]
    return "\n".join(lines)


def _fashion_text(context: Mapping[str, Any]) -> str:
    """What this report did with FashionMTL, the suite with ``001``'s conv trunk, and why."""
    why = (
        "its SimpleConvNet trunk makes a sample about 20 times as costly on a CPU as on the "
        "MLP suites (`python benchmarks/vector_env.py --sections 4` measures it), so the paper "
        "scale gives it one epoch on a CPU, and it runs only when `--suites` names it; on a GPU, "
        "`routing-env report --suites fashion-mtl --epochs 10 --device cuda` takes it to Table "
        "2's epoch 10."
    )
    if "fashion-mtl" not in context["epochs"]:
        return f"FashionMTL is not in this report: {why}"
    device = context["settings"].get("device", "cpu")
    epochs = context["epochs"]["fashion-mtl"]
    return (
        f"FashionMTL ran {epochs:g} epoch(s) ({context['budgets']['fashion-mtl']:,} samples) "
        f"per run on {device}: {why}"
    )


def _seeds_per_suite(
    suites: Sequence[str],
    seeds: list[int],
    suite_seeds: Mapping[str, int | Sequence[int]],
) -> dict[str, list[int]]:
    """Each suite's seeds: ``suite_seeds``' where it names the suite, else ``seeds`` (parsed)."""
    unknown = sorted(set(suite_seeds) - set(suites))
    if unknown:
        raise ValueError(
            f"seeds are given for {', '.join(unknown)}, which this report does not run "
            f"(suites: {', '.join(suites)})"
        )
    chosen = {
        suite: parse_seeds(suite_seeds[suite]) if suite in suite_seeds else seeds
        for suite in suites
    }
    for suite, seed_list in chosen.items():
        if not seed_list:
            raise ValueError(f"report needs at least one seed on {suite}, got none")
        if len(set(seed_list)) != len(seed_list):
            raise ValueError(f"the seeds of {suite} repeat one: {seed_list}")
    return chosen


def _more_seeds_text(seeds_of: Mapping[str, Sequence[int]], seeds: Sequence[int]) -> list[str]:
    """Why a suite's seeds differ, and what uses which (none when every suite ran ``seeds``)."""
    if all(sorted(chosen) == sorted(seeds) for chosen in seeds_of.values()):
        return []
    return [
        "Some suites ran seeds of their own (`--suite-seeds`): where runs are cheap and the "
        "differences small, more seeds narrow the intervals. A suite's tables, claims and "
        "aggregate rows use all of its seeds; the pooled statistics use the seeds every suite "
        "ran.",
        "",
    ]


def seeds_text(seeds_of: Mapping[str, Sequence[int]], seeds: Sequence[int]) -> str:
    """``"seeds 0-4"``, or with suites of their own ``"seeds 0-4 (synthetic-mtl 0-14)"``:
    ``seeds`` (those of the suites ``suite_seeds`` did not name), then the others'."""
    common = _seed_ranges(seeds)
    texts = {suite: _seed_ranges(chosen) for suite, chosen in seeds_of.items()}
    others = [f"{suite} {text}" for suite, text in texts.items() if text != common]
    if len(others) == len(texts):
        return "seeds " + "; ".join(others)
    return f"seeds {common}" + (f" ({'; '.join(others)})" if others else "")


def _seed_ranges(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2, 5"``."""
    parts: list[str] = []
    ordered = sorted(seeds)
    start = previous = ordered[0]
    for seed in [*ordered[1:], None]:
        if seed is not None and seed == previous + 1:
            previous = seed
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if seed is not None:
            start = previous = seed
    return ", ".join(parts)


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
    parser.add_argument(
        "--scale",
        choices=tuple(SCALES),
        default="paper",
        help="epochs per suite: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{suite} {e:g}" for suite, e in epochs.items())
            for name, epochs in SCALES.items()
        ),
    )
    parser.add_argument(
        "--epochs", type=float, default=None, help="epochs for every suite, over the scale's"
    )
    parser.add_argument(
        "--collaboration-reward",
        type=float,
        default=None,
        help="001's rho for the routers (001 uses 0.3 on MNIST-MTL; default 0)",
    )
    parser.add_argument(
        "--anneal-epochs",
        type=float,
        default=None,
        help="divide the module lr by 10 every E epochs (001: 20; default constant)",
    )
    add_grid_arguments(parser, seeds="5", points=False)
    parser.add_argument(
        "--suite-seeds",
        type=suite_seeds_argument,
        action="append",
        default=[],
        metavar="SUITE=SEEDS",
        help="seeds for one suite over --seeds (repeatable), e.g. synthetic-mtl=15; SEEDS is "
        + SEEDS_HELP,
    )
    add_device(parser, "of the baselines")
    add_bootstrap_reps(parser)
    parser.set_defaults(run_verb=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the parsed ``report`` arguments; print the claims table."""
    result = report(
        args.out,
        seeds=args.seeds,
        suites=_names(args.suites),
        suite_seeds=dict(args.suite_seeds),
        methods=_names(args.methods),
        scale=args.scale,
        epochs=args.epochs,
        settings={
            key: value
            for key, value in (
                ("collaboration_reward", args.collaboration_reward),
                ("device", args.device),
            )
            if value is not None
        },
        anneal_epochs=args.anneal_epochs,
        workers=args.workers,
        ray_address=args.ray_address,
        bootstrap_reps=args.bootstrap_reps,
    )
    print()
    print(claims_table(result["claims"]))
    print(f"wrote {result['path']} ({result['seconds'] / 60:.1f} minutes)")
    return result


def suite_seeds_argument(text: str) -> tuple[str, list[int]]:
    """One ``--suite-seeds SUITE=SEEDS``: the suite and its seeds (:func:`parse_seeds`)."""
    suite, equals, seeds = text.partition("=")
    if not equals or not suite.strip():
        raise UsageError(f"takes SUITE=SEEDS (e.g. synthetic-mtl=15); got {text!r}")
    return suite.strip(), parse_seeds(seeds)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]
