"""Aggregate scores across runs with rliable (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"): interquartile mean, stratified bootstrap intervals, probability of
improvement and performance profiles, for ``routing-env compare`` and ``report``.

Every run is scored on the normalised scale ``(accuracy - majority rate) / (1 - majority
rate)`` (:func:`normalised_score`): 0 is the suite's floor (predicting each task's most
frequent label, :func:`routing_env.experiments.runs.majority_rate`), 1 is a perfect test
accuracy, so that suites with different majority rates can be pooled. In rliable's terms a
suite is a *task*: a method's scores form a ``runs x suites`` matrix, and the stratified
bootstrap resamples runs within each suite.

Reproducible intervals: rliable 1.2 takes a ``random_state`` but draws its bootstrap indices
from NumPy's global legacy generator (``np.random.choice`` in
``StratifiedBootstrap.update_indices``), so a ``RandomState`` passed to it changes nothing (and
arch deprecates the argument). Each estimate here seeds that global generator with ``seed``
and restores its state afterwards, so an estimate depends on its scores, ``reps`` and ``seed``
only, not on what else was estimated before it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from routing_env.settings import AGGREGATE_DEFAULTS

#: Fewer runs than this per method and suite give no interval worth printing.
MIN_RUNS = 2

#: The suite label of estimates pooled across all suites.
POOLED = "pooled"

REPS = AGGREGATE_DEFAULTS["reps"]
SEED = AGGREGATE_DEFAULTS["seed"]
LEVEL = AGGREGATE_DEFAULTS["level"]


def normalised_score(accuracy: float | np.ndarray, majority_rate: float) -> float | np.ndarray:
    """``(accuracy - majority_rate) / (1 - majority_rate)``: 0 at the majority rate, 1 at a
    perfect accuracy, negative below the majority rate.

    Args:
        accuracy: test accuracy (a number or an array).
        majority_rate: the suite's majority rate, in ``[0, 1)``.

    Returns:
        The normalised score, a float for a number, else an array.
    """
    if majority_rate is None or not 0 <= majority_rate < 1:
        raise ValueError(f"the majority rate must lie in [0, 1), got {majority_rate!r}")
    score = (np.asarray(accuracy, dtype=np.float64) - majority_rate) / (1 - majority_rate)
    return float(score) if score.ndim == 0 else score


def record_score(record: Mapping[str, Any]) -> float:
    """The normalised score of one run record (its ``test_accuracy`` and ``majority_rate``)."""
    rate = record.get("majority_rate")
    if rate is None:
        raise ValueError(
            f"run {record.get('method')!r} seed {record.get('seed')} on {record.get('suite')!r} "
            "has no majority_rate: the normalised score needs it"
        )
    return normalised_score(record["test_accuracy"], rate)


def score_matrices(
    records: Sequence[Mapping[str, Any]],
    suites: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Each method's normalised scores as a ``runs x suites`` matrix (rliable's layout).

    Args:
        records: run records (:func:`routing_env.experiments.runs.run`).
        suites: the columns, default every suite of ``records`` in first-seen order.
        methods: the methods, default every method of ``records`` in first-seen order.

    Returns:
        ``{method: matrix}``; a column's order of runs is that of ``records``.

    Raises:
        ValueError: a method with fewer than :data:`MIN_RUNS` runs on a suite, or with
            different numbers of runs on different suites (the bootstrap needs a full matrix).
    """
    suites = list(suites or dict.fromkeys(r["suite"] for r in records))
    methods = list(methods or dict.fromkeys(r["method"] for r in records))
    if not suites or not methods:
        raise ValueError("no runs to aggregate")
    matrices = {}
    for method in methods:
        columns = []
        for suite in suites:
            column = [
                record_score(r) for r in records if (r["method"], r["suite"]) == (method, suite)
            ]
            if len(column) < MIN_RUNS:
                raise ValueError(
                    f"{method!r} has {len(column)} run(s) on {suite!r}: aggregate statistics "
                    f"need at least {MIN_RUNS} seeds per method and suite"
                )
            columns.append(column)
        if len({len(column) for column in columns}) > 1:
            counts = ", ".join(f"{s} {len(c)}" for s, c in zip(suites, columns, strict=True))
            raise ValueError(
                f"{method!r} has different numbers of runs per suite ({counts}): pooling "
                "across suites needs as many runs on each"
            )
        matrices[method] = np.array(columns, dtype=np.float64).T
    return matrices


def on_shared_seeds(
    records: Sequence[Mapping[str, Any]], suites: Sequence[str] | None = None
) -> list[Mapping[str, Any]]:
    """The records of ``suites`` (default all of ``records``') whose seed every one of those
    suites ran for the same method: pooling over suites needs a full ``runs x suites``
    matrix, so a suite that ran more seeds than the others (``report --suite-seeds``) pools
    only the seeds they share."""
    suites = list(suites or dict.fromkeys(r["suite"] for r in records))
    seeds: dict[tuple[str, str], set[int]] = {}
    for record in records:
        seeds.setdefault((record["method"], record["suite"]), set()).add(record["seed"])
    shared = {
        method: set.intersection(*(seeds.get((method, suite), set()) for suite in suites))
        for method in dict.fromkeys(r["method"] for r in records)
    }
    return [r for r in records if r["suite"] in suites and r["seed"] in shared[r["method"]]]


def interval_estimate(
    scores: np.ndarray, reps: int = REPS, seed: int = SEED, level: float = LEVEL
) -> dict[str, float]:
    """Interquartile mean and mean of a ``runs x suites`` score matrix, with stratified
    bootstrap percentile intervals (``rliable.library.get_interval_estimates``).

    The IQM is the mean of the middle 50% of all scores (``rliable.metrics.aggregate_iqm``,
    scipy's 25% trimmed mean: ``floor(n / 4)`` scores cut at each end, so with fewer than four
    it is the mean). The mean is the mean over suites of each suite's mean.

    Args:
        scores: the matrix (:func:`score_matrices`).
        reps: bootstrap resamples.
        seed: seed of the bootstrap.
        level: coverage of the intervals.

    Returns:
        ``{"iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high"}``.
    """
    from rliable import library, metrics

    matrix = _checked(scores, reps, level)

    def iqm_and_mean(data: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(data), metrics.aggregate_mean(data)])

    with _global_numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"scores": matrix}, iqm_and_mean, reps=reps, confidence_interval_size=level
        )
    # One row per statistic: point, low, high.
    table = np.column_stack([points["scores"], *intervals["scores"]])
    values = [float(value) for value in table.ravel()]
    return dict(zip(_ESTIMATES, values, strict=True))


def improvement_estimate(
    better: np.ndarray,
    worse: np.ndarray,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, float]:
    """Probability of improvement ``P(X > Y)`` of method X (``better``) over Y (``worse``):
    per suite the chance that a random run of X scores above a random run of Y (ties count
    half; the Mann-Whitney U statistic over ``runs_x * runs_y``), averaged over suites
    (``rliable.metrics.probability_of_improvement``), with a stratified bootstrap interval that
    resamples the runs of X and of Y independently.

    Args:
        better: X's ``runs x suites`` matrix; worse: Y's, with the same suites (columns).
        reps: bootstrap resamples; seed: seed of the bootstrap; level: coverage.

    Returns:
        ``{"probability", "low", "high"}``.
    """
    from rliable import library, metrics

    x, y = _checked(better, reps, level), _checked(worse, reps, level)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} suites (columns) and Y {y.shape[1]}")
    with _global_numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"pair": [x, y]},
            metrics.probability_of_improvement,
            reps=reps,
            confidence_interval_size=level,
        )
    low, high = np.ravel(intervals["pair"])
    return {"probability": float(points["pair"]), "low": float(low), "high": float(high)}


def aggregate_rows(
    records: Sequence[Mapping[str, Any]],
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> list[dict[str, Any]]:
    """IQM and mean of the normalised score with their intervals per suite and method and,
    with several suites, pooled across them (suite :data:`POOLED`; only the methods that ran
    on every suite).

    Args:
        records: run records with at least :data:`MIN_RUNS` per method and suite.
        reps, seed, level: see :func:`interval_estimate`.

    Returns:
        Rows ``{"suite", "method", "runs", "iqm", "iqm_low", ..., "mean_high"}``, suite by
        suite, then the pooled rows.
    """
    rows = []
    for suite in dict.fromkeys(r["suite"] for r in records):
        mine = [r for r in records if r["suite"] == suite]
        for method, matrix in score_matrices(mine).items():
            estimate = interval_estimate(matrix, reps, seed, level)
            rows.append({"suite": suite, "method": method, "runs": matrix.shape[0], **estimate})
    return rows + pooled_rows(records, reps, seed, level)


def pooled_rows(
    records: Sequence[Mapping[str, Any]],
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> list[dict[str, Any]]:
    """The rows of :func:`aggregate_rows` pooled across suites (suite :data:`POOLED`, ``runs``
    counting every run of every suite): none with a single suite."""
    suites = list(dict.fromkeys(r["suite"] for r in records))
    if len(suites) < 2:
        return []
    rows = []
    methods = complete_methods(records)
    for method, matrix in score_matrices(on_shared_seeds(records), suites, methods).items():
        estimate = interval_estimate(matrix, reps, seed, level)
        rows.append({"suite": POOLED, "method": method, "runs": matrix.size, **estimate})
    return rows


def improvement_rows(
    records: Sequence[Mapping[str, Any]],
    pairs: Sequence[tuple[str, str]],
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> list[dict[str, Any]]:
    """Probability of improvement of X over Y for each pair ``(X, Y)`` whose methods both ran,
    on each suite where both ran and, with several suites, pooled across the suites both ran
    on (suite :data:`POOLED`).

    Returns:
        Rows ``{"better", "worse", "suite", "probability", "low", "high"}``, pair by pair.
    """
    rows = []
    for better, worse in dict.fromkeys(pairs):
        suites = [
            suite
            for suite in dict.fromkeys(r["suite"] for r in records)
            if {better, worse} <= {r["method"] for r in records if r["suite"] == suite}
        ]
        for suite in suites + ([POOLED] if len(suites) > 1 else []):
            columns = suites if suite == POOLED else [suite]
            matrices = score_matrices(on_shared_seeds(records, columns), columns, [better, worse])
            estimate = improvement_estimate(matrices[better], matrices[worse], reps, seed, level)
            rows.append({"better": better, "worse": worse, "suite": suite, **estimate})
    return rows


def check_bootstrap(reps: int, level: float = LEVEL) -> None:
    """A ``ValueError`` unless ``reps`` (bootstrap resamples) is positive and ``level`` lies
    in (0, 1); ``compare`` and ``report`` check before their runs, not after."""
    if not isinstance(reps, int | np.integer) or reps < 1:
        raise ValueError(f"bootstrap resamples (reps) must be a positive integer, got {reps!r}")
    if not 0 < level < 1:
        raise ValueError(f"the interval level must lie in (0, 1), got {level!r}")


def complete_methods(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The methods of ``records`` that ran on every suite of ``records``."""
    suites = set(r["suite"] for r in records)
    methods = dict.fromkeys(r["method"] for r in records)
    return [m for m in methods if {r["suite"] for r in records if r["method"] == m} == suites]


def enough_runs(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every method has at least :data:`MIN_RUNS` runs on every suite it ran on."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        key = (record["suite"], record["method"])
        counts[key] = counts.get(key, 0) + 1
    return bool(counts) and min(counts.values()) >= MIN_RUNS


def with_scores(
    summary: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> list[dict[str, Any]]:
    """The rows of :func:`routing_env.experiments.compare.summarize` with the normalised score's
    IQM and mean and their intervals (keys ``score_iqm``, ``score_iqm_low``, ``score_iqm_high``,
    ``score_mean``, ``score_mean_low``, ``score_mean_high``; ``None`` for a method with fewer
    than :data:`MIN_RUNS` runs on the suite)."""
    rows = []
    for row in summary:
        mine = [r for r in records if (r["suite"], r["method"]) == (row["suite"], row["method"])]
        if len(mine) >= MIN_RUNS:
            matrix = score_matrices(mine)[row["method"]]
            estimate = interval_estimate(matrix, reps, seed, level)
        else:
            estimate = dict.fromkeys(_ESTIMATES)
        rows.append({**row, **{f"score_{key}": value for key, value in estimate.items()}})
    return rows


def iqm_cell(row: Mapping[str, Any]) -> str:
    """A summary row's IQM of the normalised score and its interval as table text (``-``
    without one)."""
    return _interval_text(row.get("score_iqm"), row.get("score_iqm_low"), row.get("score_iqm_high"))


def plot_profiles(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    title: str = "",
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> str:
    """Performance profiles (score distributions) of the methods that ran on every suite of
    ``records``: the fraction of runs, pooled over suites, whose normalised score exceeds each
    threshold, with stratified bootstrap bands (``rliable.library.create_performance_profile``,
    drawn by ``rliable.plot_utils.plot_performance_profiles``), as a PNG at ``path``.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library, plot_utils

    matrices = score_matrices(on_shared_seeds(records), methods=complete_methods(records))
    for matrix in matrices.values():
        _checked(matrix, reps, level)
    lowest = min(float(matrix.min()) for matrix in matrices.values())
    thresholds = np.linspace(min(0.0, math.floor(10 * lowest) / 10), 1.0, 101)
    with _global_numpy_seed(seed):
        profiles, bands = library.create_performance_profile(
            matrices,
            thresholds,
            custom_profile_func=score_distribution,
            reps=reps,
            confidence_interval_size=level,
        )
    figure, axis = plt.subplots(figsize=(7, 4))
    plot_utils.plot_performance_profiles(
        profiles,
        thresholds,
        performance_profile_cis=bands,
        ax=axis,
        xlabel=r"normalised score $\tau$ (0: majority rate, 1: all correct)",
        ylabel=r"fraction of runs with score $> \tau$",
        labelsize="medium",
        ticklabelsize="medium",
        legend=True,
        legendsize="small",
    )
    axis.axvline(0.0, color="grey", linestyle=":", linewidth=1)
    runs = ", ".join(f"{m} {matrix.size}" for m, matrix in matrices.items())
    axis.set_title(f"{title}\nruns: {runs}" if title else f"runs: {runs}", fontsize="small")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return os.fspath(path)


def score_distribution(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The fraction of all ``scores`` (runs and suites) above each threshold: rliable's
    ``score_distributions``, computed for all thresholds at once (rliable's takes one
    threshold at a time in every bootstrap resample: a profile of 101 thresholds cost ten
    times as much, ``benchmarks/aggregate_stats.py``)."""
    return np.mean(np.ravel(scores)[:, None] > np.asarray(thresholds)[None, :], axis=0)


def aggregate_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of :func:`aggregate_rows` as a markdown table, one line per suite and method."""
    lines = [
        "| suite | method | runs | IQM (95% CI) | mean (95% CI) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['suite']} | {row['method']} | {row['runs']} "
            f"| {_interval_text(row['iqm'], row['iqm_low'], row['iqm_high'])} "
            f"| {_interval_text(row['mean'], row['mean_low'], row['mean_high'])} |"
        )
    return "\n".join(lines) + "\n"


def wide_table(rows: Sequence[Mapping[str, Any]], statistic: str = "iqm") -> str:
    """Rows of :func:`aggregate_rows` as a markdown table of methods x suites (and pooled),
    each cell ``statistic`` (``"iqm"`` or ``"mean"``) and its interval."""
    suites = list(dict.fromkeys(row["suite"] for row in rows))
    cells = {
        (row["method"], row["suite"]): _interval_text(
            row[statistic], row[f"{statistic}_low"], row[f"{statistic}_high"]
        )
        for row in rows
    }
    lines = ["| method | " + " | ".join(suites) + " |", "| --- |" + " --- |" * len(suites)]
    for method in dict.fromkeys(row["method"] for row in rows):
        values = " | ".join(cells.get((method, suite), "-") for suite in suites)
        lines.append(f"| {method} | {values} |")
    return "\n".join(lines) + "\n"


def improvement_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of :func:`improvement_rows` as a markdown table of pairs x suites (and pooled)."""
    suites = list(dict.fromkeys(row["suite"] for row in rows))
    cells = {
        (row["better"], row["worse"], row["suite"]): _interval_text(
            row["probability"], row["low"], row["high"], digits=2
        )
        for row in rows
    }
    lines = ["| X | Y | " + " | ".join(suites) + " |", "| --- | --- |" + " --- |" * len(suites)]
    for better, worse in dict.fromkeys((row["better"], row["worse"]) for row in rows):
        values = " | ".join(cells.get((better, worse, suite), "-") for suite in suites)
        lines.append(f"| {better} | {worse} | {values} |")
    return "\n".join(lines) + "\n"


def method_text(reps: int, seed: int, level: float = LEVEL) -> str:
    """One paragraph saying how the aggregate statistics were computed (for results.md and
    REPORT.md)."""
    return (
        "Scores are normalised per run, `(accuracy - majority rate) / (1 - majority rate)`: 0 "
        "at the majority rate, 1 when every test sample is right, so suites with different "
        "majority rates pool. IQM is the interquartile mean (the mean of the middle 50% of the "
        "runs' scores; with fewer than 4 runs, the mean). Intervals are "
        f"{100 * level:.0f}% stratified bootstrap percentile intervals (rliable; runs "
        f"resampled within each suite, {reps} resamples, seed {seed})."
    )


def comparison_section(
    summary: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    out_dir: str,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[str, list[str]]:
    """The aggregate part of a comparison's ``results.md`` (rows of :func:`with_scores`), and
    the performance profile (``performance_profiles.png`` in ``out_dir``) it shows.

    Returns:
        ``(markdown, paths written)``; without :data:`MIN_RUNS` runs of every method, a line
        saying so and no figure.
    """
    lines = ["", "## Aggregate scores (rliable)", ""]
    if not enough_runs(records):
        lines += [
            f"IQM, bootstrap intervals and performance profiles need at least {MIN_RUNS} seeds "
            "per method.",
            "",
        ]
        return "\n".join(lines), []
    rows = _summary_rows(summary)
    path = plot_profiles(
        records,
        os.path.join(out_dir, "performance_profiles.png"),
        reps=reps,
        seed=seed,
        level=level,
    )
    lines += [
        method_text(reps, seed, level),
        "",
        aggregate_table(rows),
        "![performance_profiles.png](performance_profiles.png)",
        "",
    ]
    return "\n".join(lines), [path]


def report_section(
    summary: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    pairs: Sequence[tuple[str, str]],
    out_dir: str,
    reps: int = REPS,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """The aggregate statistics of a report: per suite (from the rows of :func:`with_scores`)
    and pooled IQM and mean, the probability of improvement of each pair ``(X, Y)``, and, with
    several suites, the pooled performance profile (``performance_profiles.png`` in
    ``out_dir``).

    Returns:
        ``{"markdown", "rows", "improvement", "files"}`` (``rows``: :func:`aggregate_rows`'s,
        ``improvement``: :func:`improvement_rows`'s); without :data:`MIN_RUNS` runs of every
        method on every suite, ``markdown`` says so and the rest is empty.
    """
    lines = ["## Aggregate scores (rliable)", ""]
    if not enough_runs(records):
        lines += [
            f"IQM, bootstrap intervals, probabilities of improvement and performance profiles "
            f"need at least {MIN_RUNS} seeds per method and suite.",
            "",
        ]
        return {"markdown": "\n".join(lines), "rows": [], "improvement": [], "files": []}
    rows = _summary_rows(summary) + pooled_rows(records, reps, seed, level)
    suites = list(dict.fromkeys(r["suite"] for r in records))
    improvement = improvement_rows(records, pairs, reps, seed, level)
    lines += [
        method_text(reps, seed, level)
        + f" `{POOLED}`: the runs of all suites together (methods that ran on every suite; "
        "seeds that every suite ran).",
        "",
        "IQM of the normalised score (95% CI):",
        "",
        wide_table(rows, "iqm"),
        "Mean of the normalised score (95% CI):",
        "",
        wide_table(rows, "mean"),
        "Probability of improvement `P(X > Y)`: the chance that a run of X scores above a run "
        "of Y on the same suite (ties count half), averaged over suites for `pooled`; 0.5 is "
        "no difference. The per-claim Welch intervals above judge mean accuracies; this "
        "judges whole score distributions.",
        "",
        improvement_table(improvement),
    ]
    files = []
    if len(suites) > 1:
        # With one suite, its own section shows its profile.
        files.append(
            plot_profiles(
                records,
                os.path.join(out_dir, "performance_profiles.png"),
                title="all suites",
                reps=reps,
                seed=seed,
                level=level,
            )
        )
        lines += [
            "Performance profile: the fraction of runs (all suites) whose normalised score "
            "exceeds each threshold.",
            "",
            "![performance_profiles.png](performance_profiles.png)",
            "",
        ]
    return {"markdown": "\n".join(lines), "rows": rows, "improvement": improvement, "files": files}


_ESTIMATES = ("iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high")


def _summary_rows(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :func:`with_scores` in the layout of :func:`aggregate_rows`."""
    return [
        {
            "suite": row["suite"],
            "method": row["method"],
            "runs": len(row["seeds"]),
            **{key: row[f"score_{key}"] for key in _ESTIMATES},
        }
        for row in summary
    ]


def _checked(scores: np.ndarray, reps: int, level: float) -> np.ndarray:
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"scores must be a runs x suites matrix, got shape {matrix.shape}")
    if matrix.shape[0] < MIN_RUNS or matrix.shape[1] < 1:
        raise ValueError(
            f"scores of shape {matrix.shape}: aggregate statistics need at least {MIN_RUNS} "
            "runs (rows) and one suite (column)"
        )
    if not np.isfinite(matrix).all():
        raise ValueError("scores must be finite")
    check_bootstrap(reps, level)
    return matrix


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global legacy generator (the one rliable draws from) for the block, and
    restore its state after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _interval_text(
    value: float | None, low: float | None, high: float | None, digits: int = 3
) -> str:
    if value is None:
        return "-"
    # Rounding a tiny negative number must not print as "-0.000".
    low_text, value_text, high_text = (
        f"{number:.{digits}f}".replace(f"-0.{'0' * digits}", f"0.{'0' * digits}")
        for number in (low, value, high)
    )
    return f"{value_text} [{low_text}, {high_text}]"
