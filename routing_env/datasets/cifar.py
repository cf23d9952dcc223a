"""Reader for CIFAR-100's "python version" files that never executes code from the pickle."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from routing_env.datasets.base import CorruptDataError, DatasetNotFoundError

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2 has no numpy._core
    from numpy.core import multiarray as _multiarray

__all__ = ["CifarPart", "load_cifar100_python"]

CIFAR_FOLDER = "cifar-100-python"
CIFAR_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
NUM_FINE = 100
NUM_COARSE = 20


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles written by Python 3 store bytes as
    ``_codecs.encode(text, "latin1")``; any other codec is refused."""
    if encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise CorruptDataError(f"refusing to decode pickled bytes with codec {encoding!r}")
    return text.encode("latin1")


# What a pickled dict of numpy arrays, lists, numbers and strings can ask for; the numpy.core
# spelling comes from numpy < 2 (and Python 2, which wrote the real files).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("builtins", "__builtin__"):
    for _builtin in (set, frozenset, bytearray, complex):
        _ALLOWED[(_module, _builtin.__name__)] = _builtin


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays and plain containers."""

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed constructor, refusing every other global."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CorruptDataError(
                f"refusing to load {self.source}: the pickle asks for {module}.{name}; only "
                f"arrays, lists, dicts, numbers and strings are allowed"
            ) from None


def _unpickle(path: Path) -> Any:
    """Load one pickle with ``_ArrayUnpickler``; malformed streams become ``CorruptDataError``."""
    with path.open("rb") as handle:
        try:
            return _ArrayUnpickler(handle, path).load()
        except CorruptDataError:
            raise
        except Exception as error:
            # A damaged pickle can fail in many ways (UnpicklingError, EOFError, TypeError from
            # numpy's reconstructors...); all of them mean the file is unusable.
            raise CorruptDataError(f"{path} is not a readable CIFAR-100 pickle: {error}") from error


class CifarPart(NamedTuple):
    """One CIFAR-100 split.

    Attributes:
        images: uint8, shape ``(N, 3, 32, 32)`` (channels first, as stored).
        fine_labels: int64 ``(N,)`` in ``0..99``.
        coarse_labels: int64 ``(N,)`` in ``0..19``.
    """

    images: np.ndarray
    fine_labels: np.ndarray
    coarse_labels: np.ndarray


def _labels(batch: dict, key: str, count: int, upper: int, path: Path) -> np.ndarray:
    """Labels ``key`` of a batch as int64, checked against the image count and range."""
    try:
        labels = np.asarray(batch[key], dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise CorruptDataError(f"{path}: {key} is not a list of integers ({error})") from error
    if labels.shape != (count,):
        raise CorruptDataError(
            f"{path}: {key} has shape {labels.shape}, expected ({count},) (one per image)"
        )
    if count and (labels.min() < 0 or labels.max() >= upper):
        raise CorruptDataError(
            f"{path}: {key} values range from {labels.min()} to {labels.max()}, "
            f"expected 0..{upper - 1}"
        )
    return labels


def _read_part(path: Path) -> CifarPart:
    """Read and check one of the ``train`` / ``test`` pickles."""
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise CorruptDataError(f"{path} holds a {type(batch).__name__}, expected a dict")
    # Python 2 wrote the keys as byte strings; accept text keys from re-pickled copies.
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = [key for key in ("data", "fine_labels", "coarse_labels") if key not in batch]
    if missing:
        raise CorruptDataError(
            f"{path} lacks {', '.join(missing)}; a CIFAR-100 pickle holds data, fine_labels "
            f"and coarse_labels"
        )
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise CorruptDataError(f"{path}: data must be a uint8 array of shape (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise CorruptDataError(
            f"{path}: data has {data.shape[1]} values per image, expected 3072 (3x32x32)"
        )
    count = data.shape[0]
    return CifarPart(
        images=data.reshape(count, 3, 32, 32),
        fine_labels=_labels(batch, "fine_labels", count, NUM_FINE, path),
        coarse_labels=_labels(batch, "coarse_labels", count, NUM_COARSE, path),
    )


def cifar_folder(data_dir: str | os.PathLike | None) -> Path:
    """The folder holding CIFAR-100's ``train`` and ``test`` files: ``data_dir`` itself or its
    ``cifar-100-python`` subfolder.

    Raises:
        DatasetNotFoundError: saying where to get the files.
    """
    if data_dir is not None:
        for folder in (Path(data_dir) / CIFAR_FOLDER, Path(data_dir)):
            if (folder / "train").is_file() and (folder / "test").is_file():
                return folder
    where = "no data_dir was given" if data_dir is None else f"not found in {data_dir}"
    raise DatasetNotFoundError(
        f"CIFAR-100 python files (train and test) {where}: download {CIFAR_ARCHIVE} from "
        f"{CIFAR_URL}, extract it in a folder (it creates {CIFAR_FOLDER}/) and pass that folder "
        f"as data_dir="
    )


def load_cifar100_python(data_dir: str | os.PathLike) -> tuple[CifarPart, CifarPart]:
    """Read CIFAR-100's python-version ``train`` and ``test`` pickles.

    The files may sit in ``data_dir`` or in its ``cifar-100-python`` subfolder. Unpickling only
    rebuilds numpy arrays and plain containers: a pickle asking for anything else (a function
    that would run code) is refused before it runs.

    Returns:
        ``(train, test)``.

    Raises:
        DatasetNotFoundError: the files are absent.
        CorruptDataError: a file is malformed or asks for code to be run.
    """
    folder = cifar_folder(data_dir)
    return _read_part(folder / "train"), _read_part(folder / "test")
