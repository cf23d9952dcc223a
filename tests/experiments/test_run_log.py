import csv

import pytest

from routing_env.experiments.run_log import write_run_log

CURVE = {
    "samples": [10, 20, 30],
    "test_accuracy": [0.5, 0.75, 0.875],
    "route_entropy": [1.5, None, 0.25],
    "modules_used": [6, 5, 4],
}


def test_csv_has_one_row_per_point_and_blank_for_missing_values(tmp_path):
    paths = write_run_log(CURVE, tmp_path)
    with open(paths[0]) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["samples", "test_accuracy", "route_entropy", "modules_used"]
    assert rows[1:] == [
        ["10", "0.5", "1.5", "6"],
        ["20", "0.75", "", "5"],
        ["30", "0.875", "0.25", "4"],
    ]


def test_tensorboard_events_hold_the_curve(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    paths = write_run_log(CURVE, tmp_path)
    assert any("tfevents" in path for path in paths)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    accuracy = events.Scalars("curve/test_accuracy")
    assert [e.step for e in accuracy] == [10, 20, 30]
    assert [e.value for e in accuracy] == pytest.approx([0.5, 0.75, 0.875])
    assert [e.step for e in events.Scalars("curve/route_entropy")] == [10, 30]


def test_bad_curves_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks the columns"):
        write_run_log({"samples": [1]}, tmp_path)
    with pytest.raises(ValueError, match="differ in length"):
        write_run_log({**CURVE, "modules_used": [1]}, tmp_path)
