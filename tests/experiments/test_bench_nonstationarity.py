import json

import pytest

from routing_env.experiments.cli import main


def test_cli_prints_one_row_per_agent_and_condition(tmp_path, capsys):
    argv = [
        "bench-nonstationarity",
        "--agent",
        "wpl,q",
        "--suite",
        "SyntheticMTL-v0",
        "--routes",
        "160",
        "--every",
        "80",
        "--seeds",
        "1",
        "--eval-episodes",
        "60",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["agent", "condition"])
    assert "ARI" in lines[header] and "ret.drift" in lines[header]
    rows = [line.split()[:2] for line in lines[header + 1 :]]
    assert rows == [["wpl", "trained"], ["wpl", "frozen"], ["q", "trained"], ["q", "frozen"]]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"]["routes"] == 160 and results["protocol"]["every"] == 80
    table = {(row["agent"], row["condition"]): row for row in results["table"]}
    for agent in ("wpl", "q"):
        assert table[agent, "frozen"]["module_drift"] == 0.0
        assert table[agent, "frozen"]["return_drift"] == 0.0
        assert table[agent, "trained"]["module_drift"] > 0.0
        assert 0.0 <= table[agent, "trained"]["final_accuracy"] <= 1.0
    assert len(results["runs"][0]["history"]["routes"]) == 3
    assert (tmp_path / "nonstationarity.png").stat().st_size > 10_000


def test_cli_pretrained_condition_and_lr_ratio(capsys):
    argv = [
        "bench-nonstationarity",
        "--agent",
        "reinforce",
        "--suite",
        "SyntheticMTL-v0",
        "--conditions",
        "pretrained",
        "--routes",
        "64",
        "--pretrain-routes",
        "64",
        "--seeds",
        "1",
        "--eval-episodes",
        "30",
        "--module-optimizer",
        "adam",
        "--lr-ratio",
        "2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "router/module lr ratio 2" in out and "adam" in out
    assert any(line.split()[:2] == ["reinforce", "pretrained"] for line in out.splitlines())


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--agent", "wpl,nobody", "unknown agent"),
        ("--conditions", "warm", "unknown condition"),
        ("--seeds", "a,b", "argument --seeds: takes a count"),
    ],
)
def test_cli_rejects_bad_input_naming_it(option, value, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["bench-nonstationarity", option, value, "--episodes", "10"])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_an_interrupted_bench_skips_the_runs_it_finished(tmp_path, capsys):
    argv = ["bench-nonstationarity", "--agent", "wpl", "--suite", "synthetic-mtl",
            "--conditions", "trained,frozen", "--episodes", "80", "--every", "40",
            "--seeds", "1", "--eval-episodes", "30", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    kept = tmp_path / "runs" / "wpl-trained-seed0.json"
    lost = tmp_path / "runs" / "wpl-frozen-seed0.json"
    stamp = kept.stat().st_mtime_ns
    lost.unlink()  # the run of this condition was interrupted
    assert main(argv) == 0
    assert kept.stat().st_mtime_ns == stamp and lost.exists()
    again = json.loads((tmp_path / "results.json").read_text())
    assert [row["final_accuracy"] for row in again["table"]] == [
        row["final_accuracy"] for row in first["table"]
    ]
