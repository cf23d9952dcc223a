"""Per-run logs: a CSV of the learning curve, and TensorBoard event files when ``tensorboard``
is installed (the ``tensorboard`` extra).

The curve is the one a run records at its evaluation points (training samples seen, test
accuracy, selection entropy, modules in use); it is written when the run ends. TensorBoard
shows the runs of a grid side by side (one folder per run): ``tensorboard --logdir OUT/runs``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

CURVE_COLUMNS = ("samples", "test_accuracy", "route_entropy", "modules_used")


def tensorboard_available() -> bool:
    """Whether TensorBoard event files can be written (the ``tensorboard`` package)."""
    return importlib.util.find_spec("tensorboard") is not None


def write_run_log(curve: Mapping[str, Sequence[Any]], out_dir: str | os.PathLike) -> list[str]:
    """Write ``metrics.csv`` (one row per evaluation point, columns :data:`CURVE_COLUMNS`)
    and, with TensorBoard installed, an event file with one scalar series per column, against
    the training samples. Returns the paths written.

    Raises:
        ValueError: the curve's columns are missing or of different lengths.
    """
    missing = [column for column in CURVE_COLUMNS if column not in curve]
    if missing:
        raise ValueError(f"curve lacks the columns {missing}")
    lengths = {len(curve[column]) for column in CURVE_COLUMNS}
    if len(lengths) != 1:
        raise ValueError(f"curve columns differ in length: {sorted(lengths)}")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "metrics.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CURVE_COLUMNS)
        for row in zip(*(curve[column] for column in CURVE_COLUMNS), strict=True):
            writer.writerow(["" if value is None else value for value in row])
    written = [path]
    if tensorboard_available():
        written.extend(_write_events(curve, out_dir))
    return written


def _write_events(curve: Mapping[str, Sequence[Any]], out_dir: str | os.PathLike) -> list[str]:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=os.fspath(out_dir))
    try:
        for column in CURVE_COLUMNS[1:]:
            for step, value in zip(curve["samples"], curve[column], strict=True):
                if value is not None:
                    writer.add_scalar(f"curve/{column}", float(value), global_step=int(step))
    finally:
        writer.close()
    return sorted(
        os.path.join(os.fspath(out_dir), name)
        for name in os.listdir(out_dir)
        if name.startswith("events.out.tfevents")
    )
