import json

import numpy as np

from routing_env.cli import main
from routing_env.datasets import load_suite

REQUIRED = {
    "test_accuracy",
    "per_task_accuracy",
    "route_entropy",
    "modules_used",
    "episodes",
    "seconds",
}


def test_train_writes_results_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--env",
            "SyntheticMTL-v0",
            "--agent",
            "wpl",
            "--episodes",
            "300",
            "--eval-every",
            "150",
            "--seed",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert REQUIRED <= results.keys()
    assert results["episodes"] == 300 and len(results["per_task_accuracy"]) == 6
    assert (out / "learning_curves.png").stat().st_size > 0
    assert (out / "routing_map.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "wpl on routing_env/SyntheticMTL-v0" in printed


def test_train_on_a_users_npz(tmp_path):
    dataset = load_suite("synthetic-mtl", samples_per_task=100, test_samples_per_task=10)
    path = tmp_path / "mine.npz"
    dataset.to_npz(path)
    out = tmp_path / "run"
    main(
        [
            "train",
            "--dataset",
            str(path),
            "--agent",
            "q",
            "--episodes",
            "100",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["env"] == str(path)
    assert np.isfinite(results["test_accuracy"])
