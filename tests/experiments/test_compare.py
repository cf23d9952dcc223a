import json
import math
import os
import re

import pytest

from routing_env.experiments.cli import main
from routing_env.experiments.compare import compare, confidence_interval, results_table, summarize


def test_confidence_interval_is_student_t_of_the_mean():
    mean, half = confidence_interval([0.90, 0.92, 0.94])
    # t(0.975, 2 dof) = 4.302653; sample std 0.02; half = t * 0.02 / sqrt(3)
    assert mean == pytest.approx(0.92)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert math.isnan(confidence_interval([0.5])[1])
    with pytest.raises(ValueError):
        confidence_interval([])


def test_summary_groups_seeds_per_method_and_table_prints_them():
    records = [
        {
            "suite": "s",
            "method": m,
            "kind": "router",
            "seed": seed,
            "test_accuracy": acc,
            "route_entropy": 1.0,
            "modules_used": 3,
            "seconds": 2.0,
            "majority_rate": 0.5,
        }
        for m, seed, acc in (("a", 0, 0.8), ("a", 1, 0.9), ("b", 0, 0.6), ("b", 1, 0.6))
    ]
    summary = summarize(records, bootstrap_reps=200)
    assert [row["method"] for row in summary] == ["a", "b"]
    assert summary[0]["accuracy"] == pytest.approx(0.85)
    assert summary[0]["accuracies"] == [0.8, 0.9]
    assert summary[1]["accuracy_ci"] == 0.0
    # Normalised scores (accuracy - 0.5) / 0.5: a 0.6 and 0.8, b 0.2 and 0.2.
    assert summary[0]["score_iqm"] == pytest.approx(0.7)
    assert 0.6 <= summary[0]["score_iqm_low"] < summary[0]["score_iqm_high"] <= 0.8
    table = results_table(summary)
    assert "| a | router | 85.00 ± " in table and "| 80.0, 90.0 | 0.700 [" in table
    assert "| 60.0, 60.0 | 0.200 [0.200, 0.200] |" in table


def test_compare_on_a_tiny_budget_writes_table_curves_maps_and_logs(small_synthetic_npz, tmp_path):
    result = compare(
        small_synthetic_npz,
        ["wpl", "task-specific-1-fc", "wpl"],
        seeds=2,
        budget=160,
        out_dir=tmp_path,
        workers=1,
        points=2,
        progress=False,
        bootstrap_reps=200,
    )
    assert [row["method"] for row in result["summary"]] == ["wpl", "task-specific-1-fc"]
    assert [row["seeds"] for row in result["summary"]] == [[0, 1], [0, 1]]
    for name in (
        "results.md",
        "results.json",
        "learning_curves.png",
        "entropy_curves.png",
        "routing_maps.png",
        "performance_profiles.png",
    ):
        assert os.path.getsize(tmp_path / name) > 0, name
    for method in ("wpl", "task-specific-1-fc"):
        assert (tmp_path / "runs" / method / "seed1" / "metrics.csv").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["records"]) == 4 and saved["budget"] == 160
    text = (tmp_path / "results.md").read_text()
    assert "| wpl | router |" in text
    assert "## Aggregate scores (rliable)" in text and "200 resamples" in text
    assert "| IQM (95% CI) | mean (95% CI) |" in text
    assert str(tmp_path / "performance_profiles.png") in result["files"]
    assert saved["summary"][0]["score_iqm"] is not None


def test_compare_refuses_unknown_methods_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        compare("digits-mtl", ["wpl", "nope"], seeds=1, budget=10, out_dir=tmp_path)


def test_compare_command_line(small_synthetic_npz, tmp_path, capsys):
    main(
        [
            "compare",
            "--suite",
            small_synthetic_npz,
            "--methods",
            "q,cross-stitch",
            "--seeds",
            "1",
            "--budget",
            "100",
            "--points",
            "1",
            "--workers",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    assert "| q | router |" in printed and "| cross-stitch | baseline |" in printed
    assert (tmp_path / "learning_curves.png").exists()
    # One seed: no interval to give, and the table and results.md say so.
    assert re.search(r"\| q \| router \| [\d.]+ \| [\d.]+ \| - \|", printed)
    assert "need at least 2 seeds" in (tmp_path / "results.md").read_text()
    assert not (tmp_path / "performance_profiles.png").exists()


def test_compare_refuses_bad_bootstrap_reps_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--bootstrap-reps", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "bootstrap resamples (reps) must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_interrupted_compare_does_not_redo_finished_runs(small_synthetic_npz, tmp_path):
    arguments = {"seeds": 1, "budget": 160, "out_dir": tmp_path, "workers": 1, "points": 2}
    # Few routes in flight, so that the run checkpoints before its 160 routes are done.
    arguments["method_settings"] = {"wpl": {"num_envs": 8}}
    first = compare(small_synthetic_npz, ["wpl", "task-specific-1-fc"], progress=False, **arguments)
    records = sorted(tmp_path.glob("runs/*/seed0/record.json"))
    assert len(records) == 2
    # The run of wpl is "interrupted": its record is lost, its checkpoint stays.
    wpl_record = tmp_path / "runs" / "wpl" / "seed0" / "record.json"
    wpl_record.unlink()
    assert (tmp_path / "runs" / "wpl" / "seed0" / "checkpoint.pt").exists()
    kept = (tmp_path / "runs" / "task-specific-1-fc" / "seed0" / "record.json").stat().st_mtime_ns
    again = compare(small_synthetic_npz, ["wpl", "task-specific-1-fc"], progress=False, **arguments)
    done = (tmp_path / "runs" / "task-specific-1-fc" / "seed0" / "record.json").stat().st_mtime_ns
    assert done == kept  # the finished run was read, not run again
    assert wpl_record.exists()
    for before, after in zip(first["summary"], again["summary"], strict=True):
        assert before["accuracies"] == after["accuracies"]
