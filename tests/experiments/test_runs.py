import json

import numpy as np
import pytest

from routing_env import settings
from routing_env.datasets import MultiTaskDataset, load_suite
from routing_env.datasets.base import Split
from routing_env.experiments.runs import (
    RunSpec,
    majority_rate,
    method_kind,
    recorded,
    records_spec,
    run,
    run_defaults,
)


def test_method_kinds_and_unknown_method_names_the_known_ones():
    assert method_kind("wpl") == "router"
    assert method_kind("single-q") == "router"
    assert method_kind("sb3-ppo") == "sb3"
    assert method_kind("cross-stitch") == "baseline"
    with pytest.raises(ValueError, match="unknown method 'wpll'.*router: wpl"):
        method_kind("wpll")


def test_run_spec_rejects_bad_budgets_and_router_options_on_baselines():
    with pytest.raises(ValueError, match="budget"):
        RunSpec("wpl", "digits-mtl", 0, budget=0)
    with pytest.raises(ValueError, match="points"):
        RunSpec("wpl", "digits-mtl", 0, budget=5, points=6)
    with pytest.raises(ValueError, match=r"\['lr'\] are router options"):
        RunSpec("cross-stitch", "digits-mtl", 0, budget=10, settings={"lr": 0.1})


def test_majority_rate_is_the_share_of_each_tasks_most_frequent_test_label():
    train = Split(np.zeros((4, 2), np.float32), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    test_y = np.array([1, 1, 0, 0, 0, 1])  # task 0: 2 of 3 are 1; task 1: 2 of 3 are 0
    test = Split(np.zeros((6, 2), np.float32), np.array([0, 0, 0, 1, 1, 1]), test_y)
    dataset = MultiTaskDataset(train=train, test=test, num_tasks=2, num_classes=2, name="tiny")
    assert majority_rate(dataset) == pytest.approx(4 / 6)
    assert majority_rate(load_suite("digits-mtl")) == pytest.approx(0.9, abs=0.005)


def test_router_run_record_curve_and_determinism(small_synthetic_npz, tmp_path):
    spec = RunSpec(
        "wpl", small_synthetic_npz, seed=3, budget=400, points=4, out_dir=str(tmp_path / "a")
    )
    first, second = (
        run(spec),
        run(RunSpec("wpl", small_synthetic_npz, seed=3, budget=400, points=4)),
    )
    assert first["curve"]["samples"] == [100, 200, 300, 400]
    assert len(first["curve"]["test_accuracy"]) == 4
    assert first["test_accuracy"] == first["curve"]["test_accuracy"][-1]
    assert first["curve"] == second["curve"]
    assert first["routing_map"] == second["routing_map"]
    assert np.asarray(first["routing_map"]).shape == (4, 3)
    assert first["extra_action"] == 4  # PASS: one module per task, then the extra action
    assert first["kind"] == "router" and first["method"] == "wpl" and first["seed"] == 3
    assert first["settings"]["module_lr"] == 0.3 and first["settings"]["lr"] == 0.5
    assert first["log"][0].endswith("metrics.csv") and second["log"] == []
    other = run(RunSpec("wpl", small_synthetic_npz, seed=4, budget=400, points=4))
    assert other["curve"] != first["curve"]


def test_router_run_on_the_vector_env(small_synthetic_npz):
    record = run(
        RunSpec("q", small_synthetic_npz, seed=0, budget=256, points=2, settings={"num_envs": 8})
    )
    assert record["settings"]["num_envs"] == 8
    assert record["curve"]["samples"] == [128, 256]
    assert 0.0 <= record["test_accuracy"] <= 1.0


def test_baseline_run_record(small_synthetic_npz):
    record = run(RunSpec("task-specific-all-fc", small_synthetic_npz, seed=0, budget=320, points=2))
    assert record["kind"] == "baseline" and record["routing_map"] is None
    assert record["curve"]["samples"] == [160, 320]
    assert record["settings"]["module_lr"] == 0.3 and record["settings"]["num_modules"] == 4
    assert record["test_accuracy"] == record["curve"]["test_accuracy"][-1]


def test_sb3_run_counts_routes_as_steps_over_depth(small_synthetic_npz):
    pytest.importorskip("stable_baselines3")
    record = run(RunSpec("sb3-a2c", small_synthetic_npz, seed=0, budget=160, points=2))
    assert record["kind"] == "sb3"
    assert record["settings"]["total_timesteps"] == 160 * 3
    assert record["curve"]["samples"][-1] >= 160
    assert np.asarray(record["routing_map"]).shape == (4, 3)


def test_a_record_is_read_again_only_while_the_defaults_it_ran_with_hold(
    small_synthetic_npz, tmp_path, monkeypatch
):
    spec = RunSpec("wpl", small_synthetic_npz, seed=0, budget=200, points=1, out_dir=str(tmp_path))
    record = run(spec)
    assert record["defaults"] == run_defaults("wpl")
    assert record["defaults"]["router"] == {"lr": 0.5}
    assert recorded(spec) == json.loads((tmp_path / "record.json").read_text())
    # A changed default (here WPL's lr) makes the record stale: the run is made again.
    monkeypatch.setitem(settings.ROUTER_DEFAULTS, "wpl", {"lr": 0.3})
    assert recorded(spec) is None
    monkeypatch.setitem(settings.ROUTER_DEFAULTS, "wpl", {"lr": 0.5})
    monkeypatch.setitem(settings.NETWORK_DEFAULTS, "module_lr", 0.1)
    assert recorded(spec) is None
    monkeypatch.undo()
    assert recorded(spec) is not None
    # Records written before the defaults were kept are read as before.
    old = {key: value for key, value in record.items() if key != "defaults"}
    (tmp_path / "record.json").write_text(json.dumps(old))
    assert recorded(spec) is not None and records_spec(old, spec)
