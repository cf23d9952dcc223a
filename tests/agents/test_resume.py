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
    [("single", "wpl", 3000, 300), ("vector", "reinforce-approx", 3000, 200)],
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
