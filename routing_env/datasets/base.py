"""The multi-task dataset container shared by every suite, and its ``.npz`` format."""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CorruptDataError", "DatasetNotFoundError", "MultiTaskDataset", "Split"]

#: Keys every ``.npz`` dataset file must hold.
NPZ_KEYS = ("x_train", "task_train", "y_train", "x_test", "task_test", "y_test")
#: Keys an ``.npz`` dataset file may hold besides ``NPZ_KEYS`` (written by ``to_npz``).
OPTIONAL_NPZ_KEYS = ("task_clusters", "num_tasks", "num_classes", "name", "description")
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The files a dataset is built from are not where they were looked for."""


class CorruptDataError(ValueError):
    """A dataset file exists but its content is malformed, truncated or unsafe to load."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a multi-task dataset.

    Attributes:
        x: inputs, float32, shape ``(N, *input_shape)``.
        task: task id of each sample, int64, shape ``(N,)``.
        y: target of each sample: int64 ``(N,)`` labels for classification, float32 ``(N,)`` or
            ``(N, k)`` for regression.
    """

    x: np.ndarray
    task: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        """The number of samples."""
        return int(self.task.shape[0])


def _first_index(mask: np.ndarray) -> tuple[int, ...] | int:
    """Index of the first true entry of ``mask`` (a tuple for multi-dimensional masks)."""
    flat = int(np.flatnonzero(mask)[0])
    if mask.ndim == 1:
        return flat
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def _normalise_split(split: Split, where: str) -> Split:
    """Check the arrays of one split agree with each other and return them in canonical dtypes."""
    if not isinstance(split, Split):
        raise ValueError(f"{where} must be a Split, found {type(split).__name__}")
    x, task, y = (np.asarray(a) for a in (split.x, split.task, split.y))
    if x.ndim < 2:
        raise ValueError(
            f"{where}.x must have shape (N, *input_shape) with at least 2 dimensions, "
            f"found shape {x.shape}"
        )
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{where}.x must hold numbers, found dtype {x.dtype}")
    if task.ndim != 1:
        raise ValueError(f"{where}.task must have shape (N,), found shape {task.shape}")
    if task.dtype.kind not in "iu":
        raise ValueError(f"{where}.task must hold integers, found dtype {task.dtype}")
    if y.dtype.kind not in "iuf":
        raise ValueError(
            f"{where}.y must hold integer labels (classification) or floats (regression), "
            f"found dtype {y.dtype}"
        )
    if y.ndim not in (1, 2) or (y.dtype.kind in "iu" and y.ndim != 1):
        expected = "(N,)" if y.dtype.kind in "iu" else "(N,) or (N, k)"
        raise ValueError(f"{where}.y must have shape {expected}, found shape {y.shape}")
    lengths = {"x": x.shape[0], "task": task.shape[0], "y": y.shape[0]}
    if len(set(lengths.values())) != 1:
        found = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"{where} arrays must have the same number of samples: {found}")
    x = np.asarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(
            f"{where}.x must be finite, found {int(x.size - finite.sum())} NaN/inf values "
            f"(first at index {_first_index(~finite)})"
        )
    if y.dtype.kind == "f":
        y = np.asarray(y, dtype=np.float32)
        finite = np.isfinite(y)
        if not finite.all():
            raise ValueError(
                f"{where}.y must be finite, found {int(y.size - finite.sum())} NaN/inf values "
                f"(first at index {_first_index(~finite)})"
            )
    else:
        y = np.asarray(y, dtype=np.int64)
    return Split(x=x, task=np.asarray(task, dtype=np.int64), y=y)


def _check_range(values: np.ndarray, upper: int, what: str, limit_name: str) -> None:
    """Raise if an integer array has an entry outside ``[0, upper)``."""
    bad = (values < 0) | (values >= upper)
    if bad.any():
        index = _first_index(bad)
        raise ValueError(
            f"{what} holds {int(values[index])} at index {index}; expected values in "
            f"[0, {upper}) ({limit_name}={upper})"
        )


@dataclass(eq=False)
class MultiTaskDataset:
    """Train and test splits of a multi-task dataset, checked on construction.

    Attributes:
        train: the training split.
        test: the test split.
        num_tasks: number of tasks; task ids are ``0 .. num_tasks - 1``.
        num_classes: classes per task (the same for every task; labels are
            ``0 .. num_classes - 1``), or for regression the number of outputs (1 for ``(N,)``
            targets).
        name: short name of the dataset.
        task_clusters: true cluster id of each task, shape ``(num_tasks,)``, when known.
        description: free text saying how the data was built.

    Raises:
        ValueError: naming the split, the array and the expected and found values, when the
            arrays disagree in length, dtype or shape, or hold out-of-range ids or non-finite
            inputs.
    """

    train: Split
    test: Split
    num_tasks: int
    num_classes: int
    name: str
    task_clusters: np.ndarray | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every array and convert ``x`` to float32 and ids to int64 (copy-free if they are).

        Raises:
            ValueError: describing the first problem found.
        """
        self.train = _normalise_split(self.train, "train")
        self.test = _normalise_split(self.test, "test")
        for field in ("num_tasks", "num_classes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{field} must be a positive integer, found {value!r}")
            setattr(self, field, int(value))
        if self.train.x.shape[1:] != self.test.x.shape[1:]:
            raise ValueError(
                f"train.x and test.x must have the same input shape: train has "
                f"{self.train.x.shape[1:]}, test has {self.test.x.shape[1:]}"
            )
        kinds = {name: self.split(name).y.dtype.kind for name in SPLITS}
        if kinds["train"] != kinds["test"]:
            raise ValueError(
                f"train.y and test.y must both be integer labels or both float targets: "
                f"train.y is {self.train.y.dtype}, test.y is {self.test.y.dtype}"
            )
        for name in SPLITS:
            split = self.split(name)
            _check_range(split.task, self.num_tasks, f"{name}.task", "num_tasks")
            if self.task_type == "classification":
                _check_range(split.y, self.num_classes, f"{name}.y", "num_classes")
            else:
                outputs = 1 if split.y.ndim == 1 else split.y.shape[1]
                if outputs != self.num_classes:
                    raise ValueError(
                        f"{name}.y has {outputs} regression output(s) (shape {split.y.shape}) "
                        f"but num_classes={self.num_classes}; for regression num_classes is the "
                        f"number of outputs"
                    )
        if self.train.y.shape[1:] != self.test.y.shape[1:]:
            raise ValueError(
                f"train.y and test.y must have the same shape per sample: train.y is "
                f"{self.train.y.shape}, test.y is {self.test.y.shape}"
            )
        if self.task_clusters is not None:
            clusters = np.asarray(self.task_clusters)
            if clusters.shape != (self.num_tasks,) or clusters.dtype.kind not in "iu":
                raise ValueError(
                    f"task_clusters must be integers of shape ({self.num_tasks},) (one cluster "
                    f"id per task), found dtype {clusters.dtype} and shape {clusters.shape}"
                )
            if (clusters < 0).any():
                raise ValueError(f"task_clusters must be non-negative, found {clusters.tolist()}")
            self.task_clusters = np.asarray(clusters, dtype=np.int64)

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 over the arrays of both splits (dtypes and shapes included), computed once:
        a checkpoint records it, and a run resumed on other data is refused."""
        digest = hashlib.sha256()
        for split in (self.train, self.test):
            for array in (split.x, split.task, split.y):
                values = np.ascontiguousarray(array)
                digest.update(str((values.dtype.str, values.shape)).encode())
                digest.update(values.tobytes())
        return digest.hexdigest()

    @property
    def task_type(self) -> str:
        """``"classification"`` when ``y`` holds integer labels, else ``"regression"``."""
        return "classification" if self.train.y.dtype.kind in "iu" else "regression"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Size of a model's output per sample: logits per task, or regression outputs."""
        return self.num_classes

    def split(self, name: str) -> Split:
        """The ``"train"`` or ``"test"`` split.

        Raises:
            ValueError: for any other name.
        """
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        raise ValueError(f"unknown split {name!r}: expected 'train' or 'test'")

    def to_npz(self, path: str | os.PathLike) -> None:
        """Write the dataset to an uncompressed ``.npz`` file that ``from_npz`` reads back.

        Besides the six arrays it stores ``num_tasks``, ``num_classes``, ``name``,
        ``description`` and (when known) ``task_clusters``, so that a class or task absent from
        the data survives the round trip. numpy appends ``.npz`` to a path without it.
        """
        arrays = {
            f"{field}_{name}": getattr(self.split(name), field)
            for name in SPLITS
            for field in ("x", "task", "y")
        }
        arrays["num_tasks"] = np.int64(self.num_tasks)
        arrays["num_classes"] = np.int64(self.num_classes)
        arrays["name"] = np.str_(self.name)
        arrays["description"] = np.str_(self.description)
        if self.task_clusters is not None:
            arrays["task_clusters"] = self.task_clusters
        np.savez(path, **arrays)

    @classmethod
    def from_npz(cls, path: str | os.PathLike, name: str | None = None) -> MultiTaskDataset:
        """Read a dataset from an ``.npz`` file, never unpickling anything.

        The file holds ``x_train, task_train, y_train, x_test, task_test, y_test`` and optionally
        ``task_clusters`` (and the scalars ``to_npz`` writes). Without stored counts,
        ``num_tasks`` is the largest task id plus one and ``num_classes`` the largest label plus
        one (integer ``y``) or the number of outputs (float ``y``).

        Args:
            path: the ``.npz`` file.
            name: the dataset's name; defaults to the stored name, else the file's stem.

        Raises:
            DatasetNotFoundError: the file does not exist.
            CorruptDataError: the file is not an ``.npz`` archive, misses keys, or holds object
                arrays (which would need unpickling).
            ValueError: the arrays are inconsistent (see ``MultiTaskDataset``).
        """
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFoundError(f"dataset file {path} does not exist")
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CorruptDataError(
                    f"{path} is a single .npy array, not an .npz archive with keys "
                    f"{', '.join(NPZ_KEYS)}"
                )
            with archive:
                missing = [key for key in NPZ_KEYS if key not in archive.files]
                if missing:
                    raise CorruptDataError(
                        f"{path} lacks the key(s) {', '.join(missing)}; a dataset .npz needs "
                        f"{', '.join(NPZ_KEYS)} (optional: task_clusters); it has "
                        f"{', '.join(archive.files) or 'no arrays'}"
                    )
                data = {
                    key: archive[key]
                    for key in NPZ_KEYS + OPTIONAL_NPZ_KEYS
                    if key in archive.files
                }
        except CorruptDataError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            # allow_pickle=False turns object arrays and pickled files into ValueError here.
            raise CorruptDataError(f"{path} is not a readable .npz dataset: {error}") from error
        train = Split(data["x_train"], data["task_train"], data["y_train"])
        test = Split(data["x_test"], data["task_test"], data["y_test"])
        num_tasks = data.get("num_tasks")
        if num_tasks is None:
            num_tasks = _infer_count(train.task, test.task, "task ids")
        num_classes = data.get("num_classes")
        if num_classes is None:
            if np.asarray(train.y).dtype.kind in "iu":
                num_classes = _infer_count(train.y, test.y, "labels")
            else:
                num_classes = 1 if np.ndim(train.y) == 1 else int(np.shape(train.y)[1])
        if name is None:
            name = str(data["name"]) if "name" in data else path.stem
        return cls(
            train=train,
            test=test,
            num_tasks=int(num_tasks),
            num_classes=int(num_classes),
            name=name,
            task_clusters=data.get("task_clusters"),
            description=str(data.get("description", "")),
        )


def _infer_count(train: np.ndarray, test: np.ndarray, what: str) -> int:
    """Largest value over both splits plus one; at least 1 so validation reports the real issue."""
    values = np.concatenate([np.ravel(train), np.ravel(test)])
    if values.size == 0:
        raise CorruptDataError(f"cannot infer the number of {what}: both splits are empty")
    if values.dtype.kind not in "iu":
        raise CorruptDataError(f"{what} must be integers, found dtype {values.dtype}")
    return max(int(values.max()) + 1, 1)
