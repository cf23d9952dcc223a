import json

import numpy as np

from routing_env.datasets import load_suite
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

    env = gym.make("routing_env/DigitsMTL-v0")
    test_env = gym.make("routing_env/DigitsMTL-v0", split="test", network=env.unwrapped.network)
    agent = agents.make_agent("wpl", test_env, seed=0)
    history = agents.train(agent, env, budget, eval_env=test_env, seed=0, progress=False)
    assert history["test_accuracy"] == command["history"]["test_accuracy"]
    assert history["final"]["routing_map"] == command["routing_map"]
    assert history["mean_reward"] == command["history"]["mean_reward"]
