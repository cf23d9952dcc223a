import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from .idx_files import idx_bytes


@pytest.fixture
def write_idx() -> Callable[..., Path]:
    """Write an array as an IDX file, gzipped when asked."""

    def write(path: Path, array: np.ndarray, gz: bool = False) -> Path:
        data = idx_bytes(array)
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    return write


@pytest.fixture
def mnist_like_dir(tmp_path, write_idx) -> Path:
    """Small MNIST-format files: 12 train and 4 test images per class.

    Pixel (0, 0) holds the class and pixel (0, 1) a unique image id, so tests can trace every
    sample back to its source image. Labels are gzipped, images plain, as both occur.
    """
    rng = np.random.default_rng(123)
    for prefix, per_class in (("train", 12), ("t10k", 4)):
        labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels
        images[:, 0, 1] = np.arange(len(labels))
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, gz=True)
    return tmp_path
