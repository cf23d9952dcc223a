import json
import math

import pytest

from routing_env.experiments.report import (
    CLAIMS,
    Claim,
    claims_table,
    collapse_table,
    difference_interval,
    judge_claims,
    report,
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


def test_report_on_a_tiny_grid_writes_the_claims(tmp_path):
    result = report(
        tmp_path,
        seeds=2,
        suites=["synthetic-mtl"],
        methods=["wpl", "q", "task-specific-all-fc"],
        budget_scale=0.01,
        workers=1,
        points=1,
        progress=False,
    )
    text = (tmp_path / "REPORT.md").read_text()
    assert result["summary"][0]["seeds"] == [0, 1]
    assert [r["claim"] for r in result["claims"]] == [
        "routing beats task-specific-all-fc",
        "WPL beats Q-learning",
    ]
    assert "| routing beats task-specific-all-fc | 001 sec. 4, fig. 6-8 | synthetic-mtl |" in text
    assert "## synthetic-mtl (300 training samples per run)" in text
    assert "![learning_curves.png](synthetic-mtl/learning_curves.png)" in text
    assert (tmp_path / "synthetic-mtl" / "routing_maps.png").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == 6 and saved["budgets"] == {"synthetic-mtl": 300}


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
