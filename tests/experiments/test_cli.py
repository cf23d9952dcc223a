import json

import numpy as np
import pytest
import torch

from routing_env.datasets import load_suite
from routing_env.experiments import runs
from routing_env.experiments.cli import main

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


def test_train_command_equals_gym_make_and_make_agent(tmp_path):
    """The environment's and the router's defaults are those of ``routing-env train``: the
    command and the plain Python path give the same run (DESIGN 7, "Settings")."""
    import gymnasium as gym

    import agents

    budget = 2000
    argv = ["train", "--agent", "wpl", "--seed", "0", "--episodes", str(budget)]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    command = json.loads((tmp_path / "results.json").read_text())
    assert command["settings"]["module_lr"] == 0.3 and command["settings"]["lr"] == 0.5
    assert command["settings"]["num_envs"] == 256

    env = gym.make_vec(
        "routing_env/DigitsMTL-v0", num_envs=256, vectorization_mode="vector_entry_point"
    )
    test_env = gym.make("routing_env/DigitsMTL-v0", split="test", network=env.unwrapped.network)
    agent = agents.make_agent("wpl", test_env, seed=0)
    history = agents.train(agent, env, budget, eval_env=test_env, seed=0, progress=False)
    assert history["test_accuracy"] == command["history"]["test_accuracy"]
    assert history["final"]["routing_map"] == command["routing_map"]
    assert history["mean_reward"] == command["history"]["mean_reward"]


def test_bad_arguments_and_data_end_in_one_line_with_exit_code_2(tmp_path, capsys):
    import pytest

    cases = [
        ["train", "--env", "no-such-suite", "--episodes", "10"],
        ["train", "--dataset", str(tmp_path / "missing.npz"), "--episodes", "10"],
        ["train", "--episodes", "0"],
        ["train", "--agent", "dispatched-wpl", "--num-envs", "4", "--episodes", "10"],
        ["train", "--torch-threads", "0", "--episodes", "10"],
        ["train", "--device", "gpu0", "--episodes", "10"],
        ["report", "--device", "gpu0", "--scale", "quick"],
        ["bench-nonstationarity", "--suite", "nope", "--episodes", "10"],
        ["compare", "--suite", "nope", "--methods", "wpl", "--episodes", "10", "--seeds", "1"],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as stopped:
            main(
                [*argv, "--out", str(tmp_path / "out")]
                if argv[0] != "bench-nonstationarity"
                else argv
            )
        assert stopped.value.code == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("routing-env: error: ") and "\n" not in err, (argv, err)
        assert "Traceback" not in err


def test_every_command_takes_both_spellings_of_a_suite(tmp_path):
    from routing_env import suite_id
    from routing_env.experiments.arguments import parse_seeds

    assert suite_id("synthetic-mtl") == suite_id("SyntheticMTL-v0") == "routing_env/SyntheticMTL-v0"
    assert suite_id("routing_env/SyntheticMTL-v0") == "routing_env/SyntheticMTL-v0"
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("2-4") == [2, 3, 4]
    assert parse_seeds("0,5") == [0, 5]
    small = ["--episodes", "40"]
    assert (
        main(
            [
                "train",
                "--env",
                "synthetic-mtl",
                *small,
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
                "--eval-every",
                "20",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "compare",
                "--suite",
                "routing_env/SyntheticMTL-v0",
                "--methods",
                "random",
                *small,
                "--seeds",
                "1",
                "--points",
                "1",
                "--workers",
                "1",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "bench-nonstationarity",
                "--suite",
                "synthetic-mtl",
                "--agent",
                "random",
                "--conditions",
                "frozen",
                *small,
                "--every",
                "40",
                "--seeds",
                "1",
                "--eval-episodes",
                "20",
            ]
        )
        == 0
    )


def test_regression_through_the_cli_reports_the_test_loss(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4)).astype(np.float32)
    task = np.repeat([0, 1], 120)
    y = (1000.0 * x[:, 0] + 5000.0).astype(np.float32)  # unnormalised targets
    path = tmp_path / "reg.npz"
    np.savez(
        path,
        x_train=x[:200],
        task_train=task[:200],
        y_train=y[:200],
        x_test=x[200:],
        task_test=task[200:],
        y_test=y[200:],
    )
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            str(path),
            "--agent",
            "random",
            "--episodes",
            "400",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "standardised" in printed and "test loss (MSE)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["task_type"] == "regression" and results["majority_rate"] is None
    assert np.isfinite(results["test_loss"]) and results["test_loss"] >= 0


def test_train_resumes_from_its_checkpoint_to_the_same_results(tmp_path):
    import pytest

    for num_envs in ("1", "4"):
        out = tmp_path / f"run{num_envs}"
        argv = ["train", "--env", "synthetic-mtl", "--agent", "wpl", "--episodes", "400",
                "--eval-every", "100", "--checkpoint-every", "150", "--num-envs", num_envs,
                "--out", str(out), "--no-progress"]  # fmt: skip
        assert main(argv) == 0
        whole = json.loads((out / "results.json").read_text())
        assert (out / "checkpoint.pt").exists()  # the last one, at 300 routes
        (out / "results.json").unlink()
        assert main(["train", "--resume", str(out), "--no-progress"]) == 0
        resumed = json.loads((out / "results.json").read_text())
        for key in ("test_accuracy", "routing_map", "per_task_accuracy", "episodes"):
            assert resumed[key] == whole[key], (num_envs, key)
        assert resumed["history"]["test_accuracy"] == whole["history"]["test_accuracy"]
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--resume", str(tmp_path / "nowhere")])
    assert stopped.value.code == 2


@pytest.mark.parametrize(("flag", "threads"), [([], 1), (["--torch-threads", "2"], 2)])
def test_train_runs_an_sb3_method_at_the_torch_threads_asked_for(
    tmp_path, monkeypatch, flag, threads
):
    """``train --agent sb3-...`` learns at one torch thread unless ``--torch-threads`` says
    otherwise (more threads stall on small tensors: benchmarks/sb3_threads.py)."""
    seen = []

    def learn(spec, dataset):
        seen.append(torch.get_num_threads())
        tasks = dataset.num_tasks
        return {
            "test_accuracy": 0.5,
            "per_task_accuracy": [0.5] * tasks,
            "route_entropy": 0.0,
            "modules_used": 1,
            "routing_map": [[0]] * tasks,
            "extra_action": 1,
            "seconds": 0.0,
            "curve": {},
        }

    monkeypatch.setattr(runs, "_run_sb3", learn)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        code = main(
            ["train", "--agent", "sb3-ppo", "--episodes", "10", "--out", str(tmp_path), *flag]
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0 and seen == [threads]
