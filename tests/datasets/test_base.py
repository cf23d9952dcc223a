import os
from pathlib import Path

import numpy as np
import pytest

from routing_env.datasets import CorruptDataError, DatasetNotFoundError, MultiTaskDataset, Split


def make_split(n: int = 6, num_tasks: int = 3, num_classes: int = 2, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split(
        x=rng.standard_normal((n, 4)).astype(np.float32),
        task=np.arange(n, dtype=np.int64) % num_tasks,
        y=np.arange(n, dtype=np.int64) % num_classes,
    )


def make_dataset(**overrides) -> MultiTaskDataset:
    fields = {
        "train": make_split(8),
        "test": make_split(6, seed=1),
        "num_tasks": 3,
        "num_classes": 2,
        "name": "toy",
    }
    fields.update(overrides)
    return MultiTaskDataset(**fields)


def replace(split: Split, **arrays) -> Split:
    return Split(**{**{"x": split.x, "task": split.task, "y": split.y}, **arrays})


def test_valid_dataset_properties():
    data = make_dataset(task_clusters=[0, 1, 0], description="toy data")
    assert data.task_type == "classification"
    assert data.input_shape == (4,)
    assert data.num_outputs == 2
    assert len(data.train) == 8 and len(data.test) == 6
    assert data.split("train") is data.train and data.split("test") is data.test
    assert data.task_clusters.dtype == np.int64
    np.testing.assert_array_equal(data.task_clusters, [0, 1, 0])


def test_split_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown split 'valid'.*'train' or 'test'"):
        make_dataset().split("valid")


def test_converts_dtypes_and_keeps_float32_inputs_without_copy():
    train = make_split(8)
    converted = make_dataset(
        train=train,
        test=Split(
            x=np.zeros((2, 4), dtype=np.uint8),
            task=np.array([0, 2], dtype=np.int32),
            y=np.array([1, 0], dtype=np.uint8),
        ),
    )
    assert converted.train.x is train.x and converted.train.task is train.task
    assert converted.test.x.dtype == np.float32
    assert converted.test.task.dtype == np.int64
    assert converted.test.y.dtype == np.int64


def test_regression_targets():
    rng = np.random.default_rng(0)
    split = Split(rng.standard_normal((5, 1)), np.zeros(5, dtype=np.int64), rng.standard_normal(5))
    data = MultiTaskDataset(split, split, num_tasks=1, num_classes=1, name="reg")
    assert data.task_type == "regression"
    assert data.num_outputs == 1
    assert data.train.y.dtype == np.float32 and data.train.x.dtype == np.float32
    multi = Split(split.x, split.task, rng.standard_normal((5, 3)))
    assert MultiTaskDataset(multi, multi, num_tasks=1, num_classes=3, name="reg3").num_outputs == 3
    with pytest.raises(ValueError, match=r"train.y has 3 regression output\(s\).*num_classes=1"):
        MultiTaskDataset(multi, multi, num_tasks=1, num_classes=1, name="reg3")


BAD_CASES = [
    (
        "length",
        lambda s: replace(s, task=s.task[:-1]),
        "train arrays must have the same number of samples: x has 8, task has 7, y has 8",
    ),
    (
        "task range",
        lambda s: replace(s, task=s.task + 1),
        r"train.task holds 3 at index 2; .*\[0, 3\)",
    ),
    ("negative label", lambda s: replace(s, y=s.y - 1), r"train.y holds -1 at index 0; .*\[0, 2\)"),
    ("label range", lambda s: replace(s, y=s.y * 2), r"train.y holds 2 at index 1"),
    (
        "nan",
        lambda s: replace(s, x=np.where(np.arange(32).reshape(8, 4) == 9, np.nan, s.x)),
        r"train.x must be finite, found 1 NaN/inf values \(first at index \(2, 1\)\)",
    ),
    (
        "float task",
        lambda s: replace(s, task=s.task.astype(float)),
        "train.task must hold integers",
    ),
    ("2-d labels", lambda s: replace(s, y=s.y[:, None]), r"train.y must have shape \(N,\)"),
    ("1-d x", lambda s: replace(s, x=s.x[:, 0]), r"train.x must have shape \(N, \*input_shape\)"),
    ("string y", lambda s: replace(s, y=s.y.astype(str)), "train.y must hold integer labels"),
]


@pytest.mark.parametrize(("case", "corrupt", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_validation_names_the_problem(case, corrupt, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(train=corrupt(make_split(8)))


def test_validation_of_cross_split_and_scalar_fields():
    test = make_split(6)
    with pytest.raises(ValueError, match=r"same input shape: train has \(4,\), test has \(2, 2\)"):
        make_dataset(test=replace(test, x=test.x.reshape(6, 2, 2)))
    with pytest.raises(ValueError, match="train.y is int64, test.y is float32"):
        make_dataset(test=replace(test, y=test.y.astype(np.float32)))
    with pytest.raises(ValueError, match=r"test.task holds 3 at index 0"):
        make_dataset(test=replace(test, task=np.full(6, 3)))
    with pytest.raises(ValueError, match="num_tasks must be a positive integer, found 0"):
        make_dataset(num_tasks=0)
    with pytest.raises(ValueError, match=r"task_clusters must be integers of shape \(3,\)"):
        make_dataset(task_clusters=[0, 1])


def test_npz_round_trip_keeps_everything(tmp_path):
    # num_classes=5 with labels only in {0, 1}: the stored count must survive the round trip.
    data = make_dataset(num_classes=5, task_clusters=[1, 0, 1], description="round trip")
    path = tmp_path / "toy.npz"
    data.to_npz(path)
    back = MultiTaskDataset.from_npz(path)
    for name in ("train", "test"):
        for field in ("x", "task", "y"):
            original = getattr(data.split(name), field)
            loaded = getattr(back.split(name), field)
            np.testing.assert_array_equal(loaded, original)
            assert loaded.dtype == original.dtype
    assert (back.num_tasks, back.num_classes, back.name) == (3, 5, "toy")
    assert back.description == "round trip"
    np.testing.assert_array_equal(back.task_clusters, [1, 0, 1])
    assert MultiTaskDataset.from_npz(path, name="other").name == "other"


def test_from_npz_infers_counts_from_the_six_arrays(tmp_path):
    path = tmp_path / "plain_arrays.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 3)),
        task_train=np.array([0, 1, 4, 1]),
        y_train=np.array([0, 2, 1, 0]),
        x_test=np.ones((2, 3)),
        task_test=np.array([0, 2]),
        y_test=np.array([6, 0]),
    )
    data = MultiTaskDataset.from_npz(path)
    assert (data.num_tasks, data.num_classes, data.name) == (5, 7, "plain_arrays")
    assert data.task_clusters is None
    path = tmp_path / "regression.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 1)),
        task_train=np.zeros(4, dtype=int),
        y_train=np.zeros((4, 2)),
        x_test=np.zeros((1, 1)),
        task_test=np.zeros(1, dtype=int),
        y_test=np.zeros((1, 2)),
    )
    data = MultiTaskDataset.from_npz(path)
    assert (data.task_type, data.num_classes) == ("regression", 2)


def test_from_npz_missing_keys_names_them(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 2)), task_train=np.zeros(2, dtype=int))
    with pytest.raises(CorruptDataError) as info:
        MultiTaskDataset.from_npz(path)
    message = str(info.value)
    assert "lacks the key(s) y_train, x_test, task_test, y_test" in message
    assert "needs x_train, task_train, y_train, x_test, task_test, y_test" in message


def test_from_npz_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist") as info:
        MultiTaskDataset.from_npz(tmp_path / "absent.npz")
    assert isinstance(info.value, FileNotFoundError)


def test_from_npz_rejects_files_that_are_not_npz(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("this is not a zip archive\n")
    with pytest.raises(CorruptDataError, match="not a readable .npz dataset"):
        MultiTaskDataset.from_npz(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(CorruptDataError, match="single .npy array"):
        MultiTaskDataset.from_npz(single)
    truncated = tmp_path / "truncated.npz"
    make_dataset().to_npz(tmp_path / "full.npz")
    truncated.write_bytes((tmp_path / "full.npz").read_bytes()[:300])
    with pytest.raises(CorruptDataError):
        MultiTaskDataset.from_npz(truncated)


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_from_npz_refuses_object_arrays_without_unpickling(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "objects.npz"
    y_train = np.empty(2, dtype=object)
    y_train[:] = [_Payload(marker), 1]
    np.savez(
        path,
        x_train=np.zeros((2, 2)),
        task_train=np.zeros(2, dtype=int),
        y_train=y_train,
        x_test=np.zeros((1, 2)),
        task_test=np.zeros(1, dtype=int),
        y_test=np.zeros(1, dtype=int),
    )
    with pytest.raises(CorruptDataError, match="allow_pickle=False"):
        MultiTaskDataset.from_npz(path)
    assert not marker.exists()
    assert issubclass(CorruptDataError, ValueError)
