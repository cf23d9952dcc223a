import json
import math
import shutil

import pytest

from routing_env.experiments.cli import main
from routing_env.experiments.report import (
    CLAIMS,
    SEED_MNIST_MTL,
    Claim,
    claims_table,
    collapse_table,
    difference_interval,
    epoch_points,
    epoch_table,
    judge_claims,
    report,
    seeds_text,
    seeds_to_resolve,
    suite_epochs,
    verdict,
)


def test_difference_interval_is_welch_t():
    difference, low, high = difference_interval([0.9, 0.92, 0.94], [0.8, 0.8, 0.8])
    # spread = sqrt(0.02**2 / 3); Welch dof = 2; t(0.975, 2) = 4.302653
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert difference == pytest.approx(0.12)
    assert (low, high) == pytest.approx((0.12 - half, 0.12 + half), rel=1e-5)
    assert difference_interval([0.5, 0.5], [0.4, 0.4]) == pytest.approx((0.1, 0.1, 0.1))
    assert math.isnan(difference_interval([0.5], [0.4, 0.3])[1])


def test_verdicts():
    assert verdict(0.01, 0.05) == "supported"
    assert verdict(-0.05, -0.01) == "contradicted"
    assert verdict(-0.01, 0.05) == "not resolved"
    assert verdict(math.nan, math.nan).startswith("not resolved")


def test_claims_are_judged_per_suite_where_both_methods_ran():
    def row(suite, method, accuracies):
        return {
            "suite": suite,
            "method": method,
            "accuracies": accuracies,
            "accuracy": sum(accuracies) / len(accuracies),
            "majority_rate": 0.9,
        }

    summary = [
        row("s1", "wpl", [0.99, 0.98, 0.99]),
        row("s1", "q", [0.90, 0.90, 0.90]),
        row("s2", "wpl", [0.90, 0.90, 0.91]),
        row("s2", "q", [0.95, 0.96, 0.95]),
        row("s2", "cross-stitch", [0.80, 0.99, 0.90]),
        row("s3", "wpl", [0.90, 0.90, 0.90]),
        row("s3", "q", [0.90, 0.90, 0.90]),
    ]
    claims = (Claim("WPL beats Q", "x", "wpl", "q"), Claim("vs cs", "x", "wpl", "cross-stitch"))
    rows = judge_claims(summary, claims)
    assert [(r["suite"], r["verdict"]) for r in rows] == [
        ("s1", "supported"),
        ("s2", "contradicted"),
        ("s3", "not resolved (both at the majority rate)"),
        ("s2", "not resolved"),
    ]
    assert "| WPL beats Q | x | s1 | 98.67 | 90.00 | +8.67" in claims_table(rows)
    assert {claim.better for claim in CLAIMS} == {"wpl"}
    # One sentence of why per claim, in the table.
    reasons = [r["reason"] for r in rows]
    assert reasons[0].startswith("wpl is ahead by 8.67 points")
    assert "above zero over 3 seeds" in reasons[0]
    assert reasons[1].startswith("q is ahead by 5.00 points") and "below zero" in reasons[1]
    assert "majority rate (90.0%)" in reasons[2] and "more seeds would not" in reasons[2]
    assert reasons[3].startswith("the difference +0.67 points is inside the seeds' spread")
    assert f"at least {rows[3]['seeds_needed']:.0f} seeds per method" in reasons[3]
    assert all(f"| {reason} |" in claims_table(rows) for reason in reasons)


def test_seeds_to_resolve_a_difference():
    # Spread 0.01 on each side, difference 0.01: n with t(2n - 2) * sqrt(2e-4 / n) < 0.01.
    a, b = [0.90, 0.91, 0.92], [0.89, 0.90, 0.91]
    assert seeds_to_resolve(a, b) == 9  # t(16) = 2.12: 0.00999; at 8, t(14) = 2.14: 0.0107
    low = difference_interval(a * 3, b * 3)[1]  # 9 seeds each, about the same spread
    assert low > 0
    assert seeds_to_resolve([0.5, 0.6], [0.6, 0.5]) == math.inf  # equal means
    assert math.isnan(seeds_to_resolve([0.5], [0.4, 0.6]))


TINY_GRID = {
    "seeds": 2,
    "suites": ["synthetic-mtl"],
    "methods": ["wpl", "q", "task-specific-all-fc"],
    "epochs": 0.05,
    "workers": 1,
    "progress": False,
    "bootstrap_reps": 200,
}


def test_report_on_a_tiny_grid_writes_the_claims(tmp_path):
    result = report(tmp_path, **TINY_GRID)
    text = (tmp_path / "REPORT.md").read_text()
    assert result["summary"][0]["seeds"] == [0, 1]
    assert [r["claim"] for r in result["claims"]] == [
        "routing beats task-specific-all-fc",
        "WPL beats Q-learning",
    ]
    assert "| routing beats task-specific-all-fc | 001 sec. 4, fig. 6-8 | synthetic-mtl |" in text
    assert "## synthetic-mtl (0.05 epochs, 300 training samples per run)" in text
    assert "![learning_curves.png](synthetic-mtl/learning_curves.png)" in text
    assert (tmp_path / "synthetic-mtl" / "routing_maps.png").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == 6 and saved["budgets"] == {"synthetic-mtl": 300}
    assert saved["epochs"] == {"synthetic-mtl": 0.05}
    # rliable's statistics next to the Welch intervals: IQM per suite, P(X > Y) of the claims.
    assert "## Aggregate scores (rliable)" in text and "200 resamples" in text
    assert "IQM of the normalised score (95% CI):" in text
    assert "| method | synthetic-mtl |" in text and "| wpl | " in text
    assert "| X | Y | synthetic-mtl |" in text
    assert "| wpl | task-specific-all-fc | " in text and "| wpl | q | " in text
    assert "![performance_profiles.png](synthetic-mtl/performance_profiles.png)" in text
    assert [(r["better"], r["worse"]) for r in saved["aggregates"]["improvement"]] == [
        ("wpl", "task-specific-all-fc"),
        ("wpl", "q"),
    ]
    assert [r["method"] for r in saved["aggregates"]["rows"]] == [
        "wpl",
        "q",
        "task-specific-all-fc",
    ]
    assert all(0 <= r["probability"] <= 1 for r in saved["aggregates"]["improvement"])
    assert "FashionMTL is not in this report:" in text
    assert "seeds of their own" not in text
    # The invocations are logged; a second one reads every run and says so.
    assert saved["invocations"][0]["runs_made"] == 6
    again = report(tmp_path, **TINY_GRID)
    assert [(i["runs_made"], i["runs_read"]) for i in again["invocations"]] == [(6, 0), (0, 6)]
    text = (tmp_path / "REPORT.md").read_text()
    assert "1. " in text and "2. " in text and "0 runs made, 6 read from earlier records" in text
    assert (
        "with 1 worker processes: 6 runs made, 0 read from earlier records (synthetic-mtl; "
        "seeds 0-1, finished"
    ) in text
    assert "The runs' own wall time, summed over runs per suite" in text
    # A committed report keeps results.json, not its runs' folders: it still extends.
    shutil.rmtree(tmp_path / "synthetic-mtl" / "runs")
    third = report(tmp_path, **TINY_GRID)
    assert third["invocations"][-1]["runs_made"] == 0
    assert [r["test_accuracy"] for r in third["records"]] == [
        r["test_accuracy"] for r in result["records"]
    ]


def test_a_suite_can_run_more_seeds_than_the_others(tmp_path):
    grid = {**TINY_GRID, "methods": ["wpl", "q"], "suites": ["synthetic-mtl", "digits-mtl"]}
    grid["epochs"] = 0.02
    result = report(tmp_path, **grid, suite_seeds={"synthetic-mtl": 3})
    seeds = {(r["suite"], r["method"]): r["seeds"] for r in result["summary"]}
    assert seeds[("synthetic-mtl", "wpl")] == [0, 1, 2] and seeds[("digits-mtl", "q")] == [0, 1]
    assert len(result["records"]) == 10
    runs = {(r["suite"], r["method"]): r["runs"] for r in result["aggregates"]["rows"]}
    assert runs[("synthetic-mtl", "wpl")] == 3 and runs[("pooled", "wpl")] == 4
    assert result["seeds"] == {"synthetic-mtl": [0, 1, 2], "digits-mtl": [0, 1]}
    text = (tmp_path / "REPORT.md").read_text()
    assert "CPUs), seeds 0-1 (synthetic-mtl 0-2), in these invocations" in text
    assert "Some suites ran seeds of their own (`--suite-seeds`)" in text
    with pytest.raises(ValueError, match="seeds are given for cifar-mtl, which this report"):
        report(tmp_path, **grid, suite_seeds={"cifar-mtl": 3})
    with pytest.raises(ValueError, match="the seeds of digits-mtl repeat one"):
        report(tmp_path, **grid, suite_seeds={"digits-mtl": [1, 1]})


def test_seeds_text_names_the_suites_that_ran_other_seeds():
    assert seeds_text({"a": [0, 1, 2]}, [0, 1, 2]) == "seeds 0-2"
    assert seeds_text({"a": [0, 1], "c": [0, 1, 2, 5]}, [0, 1]) == "seeds 0-1 (c 0-2, 5)"
    assert seeds_text({"a": [0, 1, 2], "c": [4]}, [0, 1]) == "seeds a 0-2; c 4"


def test_collapse_table_pairs_the_per_task_and_single_agent_routers():
    def row(suite, method, accuracy, entropy, modules):
        return {
            "suite": suite,
            "method": method,
            "accuracy": accuracy,
            "route_entropy": entropy,
            "modules_used": modules,
        }

    summary = [
        row("s1", "wpl", 0.98, 1.8, 20.0),
        row("s1", "reinforce-approx", 0.9, 0.02, 3.3),
        row("s2", "wpl", 0.9, 1.0, 10.0),
    ]
    table = collapse_table(summary)
    assert "| s1 | wpl | 98.00 | 1.800 | 20.0 |" in table
    assert "| s1 | reinforce-approx | 90.00 | 0.020 | 3.3 |" in table
    assert "s2" not in table


def test_epochs_per_suite_and_the_table2_points_they_reach():
    assert suite_epochs(["digits-mtl", "mine.npz"], "quick", None) == {
        "digits-mtl": 1.0,
        "mine.npz": 5.0,
    }
    assert suite_epochs(["digits-mtl"], "paper", 2.5) == {"digits-mtl": 2.5}
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        suite_epochs(["digits-mtl"], "huge", None)
    with pytest.raises(ValueError, match="epochs must be positive"):
        suite_epochs(["digits-mtl"], "paper", 0)
    assert epoch_points(0.5) == []
    assert epoch_points(1) == [1]
    assert epoch_points(7.9) == [1, 5, 7]
    assert epoch_points(70) == [1, 5, 10, 20, 50, 70]
    assert epoch_points(100) == [1, 5, 10, 20, 50, 100]


def test_epoch_table_is_table2_shaped_with_the_seeds_rows():
    def record(method, samples, accuracies):
        return {"method": method, "curve": {"samples": samples, "test_accuracy": accuracies}}

    records = [
        record("wpl", [100, 200, 300], [0.90, 0.95, 0.99]),
        record("wpl", [100, 200, 300], [0.90, 0.97, 0.97]),
        # A baseline evaluates after the step that reaches the epoch's end.
        record("cross-stitch", [112, 208, 304], [0.91, 0.92, 0.93]),
        record("q", [100], [0.9]),
    ]
    table = epoch_table(records, 100, [1, 3], {"wpl": SEED_MNIST_MTL["wpl"]})
    lines = table.splitlines()
    assert lines[0] == "| method | epoch 1 | epoch 3 |"
    assert lines[2] == "| wpl | 90.0 ± 0.0 | 98.0 ± 1.0 |"
    assert lines[3] == "| *001, MNIST-MTL* | 90 | - |"
    assert lines[4] == "| cross-stitch | 91.0 ± 0.0 | 93.0 ± 0.0 |"
    assert lines[5] == "| q | 90.0 ± 0.0 | - |"


def test_report_quick_scale_through_the_cli(tmp_path, capsys):
    """The quick scale (one epoch) runs as CI would, and REPORT.md has the epoch table."""
    argv = ["report", "--scale", "quick", "--suites", "synthetic-mtl", "--seeds", "2"]
    argv += ["--methods", "wpl,task-specific-1-fc", "--workers", "1", "--out", str(tmp_path)]
    assert main([*argv, "--anneal-epochs", "20"]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "divides the module learning rate by 10 every 20 epochs" in text
    assert "## synthetic-mtl (1 epochs, 6,000 training samples per run)" in text
    assert "| method | epoch 1 |" in text
    assert "`routing-env report --scale quick`" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {r["seed"] for r in saved["records"]} == {0, 1}
    for record in saved["records"]:
        assert record["curve"]["samples"][-1] in range(6000, 6016), record["method"]
        assert record["settings"]["module_lr_anneal_every"] == 20 * 6000, record["method"]


def test_report_suite_seeds_option(tmp_path, capsys):
    argv = ["report", "--suites", "synthetic-mtl", "--seeds", "1", "--methods", "wpl,q"]
    argv += ["--workers", "1", "--out", str(tmp_path), "--epochs", "0.02"]
    for bad, message in (
        ("synthetic-mtl", "takes SUITE=SEEDS"),
        ("synthetic-mtl=x", "takes a count N"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--suite-seeds", bad])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--suite-seeds", "digits-mtl=2"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("routing-env: error: seeds are given for digits-mtl")
    assert "\n" not in error
    assert main([*argv, "--suite-seeds", "synthetic-mtl=2"]) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["seed"] for r in saved["records"]) == [0, 0, 1, 1]


def test_report_device_option(tmp_path, capsys):
    argv = ["report", "--scale", "quick", "--suites", "synthetic-mtl", "--seeds", "1"]
    argv += ["--methods", "wpl,task-specific-1-fc", "--workers", "1", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--device", "gpu0"])
    assert stop.value.code == 2
    assert "takes a torch device" in capsys.readouterr().err
    assert main([*argv, "--device", "cpu", "--epochs", "0.05"]) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert all(record["spec"]["settings"]["device"] == "cpu" for record in saved["records"])
