"""Cost and Monte-Carlo error of the aggregate statistics (``routing_env.experiments.aggregate``).

Prints, for a report-shaped set of records (``--suites`` suites x ``--methods`` methods x
``--seeds`` seeds, made-up scores) and ``--reps`` bootstrap resamples, the seconds (wall and
CPU) of each part of a report's statistics: IQM and mean per suite and method, pooled, the
probability of improvement of one pair (per suite and pooled; a report has 7 pairs), the
pooled performance profile. Then, for one method's runs on one suite, how far the 95% bounds
move between bootstrap seeds (standard deviation over ``--repeats`` seeds) against the
interval's width.

Run: ``python benchmarks/aggregate_stats.py --reps 1000``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from routing_env.experiments import aggregate


def made_up_records(suites: int, methods: int, seeds: int) -> list[dict]:
    """Records with normalised scores drawn around a method-dependent level."""
    rng = np.random.default_rng(0)
    return [
        {
            "suite": f"suite{s}",
            "method": f"method{m}",
            "seed": seed,
            "test_accuracy": float(0.9 + 0.1 * np.clip(rng.normal(m / methods, 0.1), -1, 1)),
            "majority_rate": 0.9,
        }
        for s in range(suites)
        for m in range(methods)
        for seed in range(seeds)
    ]


def timed(label: str, function, *args, **kwargs):
    began, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    print(
        f"{label}: {time.perf_counter() - began:.2f} s wall, {time.process_time() - cpu:.2f} s CPU",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=aggregate.REPS)
    parser.add_argument("--suites", type=int, default=4)
    parser.add_argument("--methods", type=int, default=9)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from rliable import library  # noqa: F401  (imported once, outside the timings)

    records = made_up_records(args.suites, args.methods, args.seeds)
    print(f"{args.suites} suites x {args.methods} methods x {args.seeds} seeds, reps {args.reps}")
    timed("IQM and mean, every suite and method", aggregate.aggregate_rows, records, args.reps)
    timed("  of which pooled", aggregate.pooled_rows, records, args.reps)
    timed(
        "P(X > Y) of one pair, per suite and pooled",
        aggregate.improvement_rows,
        records,
        [("method0", "method1")],
        args.reps,
    )
    with tempfile.TemporaryDirectory() as folder:
        timed(
            "pooled performance profile",
            aggregate.plot_profiles,
            records,
            f"{folder}/profile.png",
            reps=args.reps,
        )
    scores = aggregate.score_matrices(records, ["suite0"], ["method4"])["method4"]
    estimates = [
        aggregate.interval_estimate(scores, args.reps, seed) for seed in range(args.repeats)
    ]
    width = np.mean([e["iqm_high"] - e["iqm_low"] for e in estimates])
    for bound in ("iqm_low", "iqm_high"):
        spread = np.std([e[bound] for e in estimates])
        print(
            f"{args.seeds} runs, {bound}: std over {args.repeats} bootstrap seeds {spread:.4f}, "
            f"interval width {width:.4f}, ratio {spread / width:.3f}"
        )


if __name__ == "__main__":
    main()
