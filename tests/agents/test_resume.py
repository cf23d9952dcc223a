"""A run killed with SIGKILL after its first checkpoint and resumed ends exactly as the
uninterrupted run (DESIGN 7, "Checkpoints")."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RUNNER = Path(__file__).with_name("resume_run.py")


def run(out: Path, kind: str, agent: str, episodes: int, every: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(out), kind, agent, str(episodes), str(every)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize(
    ("kind", "agent", "episodes", "every"),
    [
        ("single", "wpl", 3000, 300),
        ("vector", "reinforce-approx", 3000, 200),
        ("game", "wpl", 800, 100),
    ],
)
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, kind, agent, episodes, every):
    whole = tmp_path / "whole"
    whole.mkdir()
    assert run(whole, kind, agent, episodes, every).wait(timeout=600) == 0
    expected = json.loads((whole / "final.json").read_text())

    killed = tmp_path / "killed"
    killed.mkdir()
    process = run(killed, kind, agent, episodes, every)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(float(np.random.default_rng().uniform(0.0, 0.5)))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "final.json").exists(), "the run finished before it was killed"
    resumed = run(killed, kind, agent, episodes, every)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()
    got = json.loads((killed / "final.json").read_text())
    assert expected["resumed_at"] == 0 and got["resumed_at"] >= every  # it did resume
    assert got["network"] == expected["network"]
    assert got["agent"] == expected["agent"]
    assert got["updates"] == expected["updates"]
    assert got["history"] == expected["history"]


def test_a_saved_router_with_its_modules_evaluates_the_same_in_a_fresh_process(tmp_path):
    import agents
    from routing_env import RoutingEnv

    small = {"samples_per_task": 80, "test_samples_per_task": 15}
    env = RoutingEnv("synthetic-mtl", dataset_options=small)
    test = RoutingEnv("synthetic-mtl", split="test", network=env.network, dataset_options=small)
    agent = agents.make_agent("wpl", env, seed=0)
    agents.train(agent, env, 6000, seed=0, progress=False)
    before = agents.evaluate(agent, test)["accuracy"]
    path = tmp_path / "wpl.pt"
    agents.save(agent, path, network=env.network)
    code = (
        "import agents; from routing_env import RoutingEnv; "
        f"env = RoutingEnv('synthetic-mtl', split='test', dataset_options={small!r}); "
        f"fresh = RoutingEnv('synthetic-mtl', split='test', dataset_options={small!r}); "
        f"agent = agents.load({str(path)!r}, network=env.network); "
        "print(agents.evaluate(agent, env)['accuracy'], agents.evaluate(agent, fresh)['accuracy'])"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    with_modules, without = (float(value) for value in output.split())
    assert with_modules == before
    assert without != before  # the router alone, on untrained modules, is another router
    with pytest.raises(ValueError, match="holds no modules"):
        agents.save(agent, tmp_path / "bare.pt")
        agents.load(tmp_path / "bare.pt", network=env.network)
