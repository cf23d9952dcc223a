"""Every ``routing-env`` command of the README runs as typed, at a tiny budget."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from routing_env.experiments.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"

#: Options whose values set the budget or the output; the test shrinks or redirects them.
TINY = {"--episodes": "40", "--every": "20", "--seeds": "1", "--eval-every": "20"}
#: Options the test adds to a verb so that one run, not a grid, stands for it.
NARROW = {
    "report": ["--suites", "synthetic-mtl", "--methods", "wpl", "--epochs", "0.01"],
    "compare": ["--points", "1", "--workers", "1"],
    "bench-nonstationarity": ["--eval-episodes", "20", "--agent", "wpl"],
}


def readme_commands() -> list[str]:
    """The ``routing-env`` commands of the README's bash blocks and of its inline code."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("routing-env "):
                commands.append(line)
    commands += re.findall(r"`(routing-env [^`\n]+)`", text)
    # Inline fragments that name an option ("routing-env train --agent") are not commands;
    # "--resume" needs an interrupted run (tests/experiments/test_cli.py resumes one).
    return [
        c
        for c in dict.fromkeys(commands)
        if "--help" not in c
        and "..." not in c
        and "--resume" not in c
        and not c.split()[-1].startswith("--")
    ]


def shrink(command: str, out: Path) -> list[str]:
    words = shlex.split(command)[1:]
    for i, word in enumerate(words[:-1]):
        if word in TINY:
            words[i + 1] = TINY[word]
        if word == "--out":
            words[i + 1] = str(out)
    if "--out" not in words and words[0] in ("train", "compare", "report"):
        words += ["--out", str(out)]
    if words[0] == "train":
        words += ["--no-progress"]
        if "--episodes" not in words:
            words += ["--episodes", "40"]
    if words[0] == "bench-nonstationarity" and "--agent" in words:
        at = words.index("--agent")
        del words[at : at + 2]
    return words + NARROW.get(words[0], [])


def test_the_readme_has_commands_of_every_verb():
    verbs = {shlex.split(command)[1] for command in readme_commands()}
    assert {"train", "compare", "report", "bench-nonstationarity"} <= verbs


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "my_data.npz" in command:  # the README's user dataset
        rng = np.random.default_rng(0)
        x = rng.normal(size=(80, 5)).astype(np.float32)
        task = np.repeat([0, 1], 40)
        y = (x[:, 0] > 0).astype(np.int64)
        np.savez(
            "my_data.npz",
            x_train=x[:60],
            task_train=task[:60],
            y_train=y[:60],
            x_test=x[60:],
            task_test=task[60:],
            y_test=y[60:],
        )
    assert main(shrink(command, tmp_path / "out")) == 0
