import gzip

import numpy as np
import pytest

from routing_env.datasets import CorruptDataError, DatasetNotFoundError
from routing_env.datasets.idx import find_idx, read_idx

from .idx_files import idx_bytes

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dtype", DTYPES, ids=[np.dtype(d).name for d in DTYPES])
def test_round_trip(tmp_path, write_idx, dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = write_idx(tmp_path / "data-idx3", array, gz=gz)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (5, 3, 4)
    np.testing.assert_array_equal(back, array)
    back[0, 0, 0] = 1  # the result must be writable, not a view of the file's bytes


def test_gzip_is_detected_by_content_not_name(tmp_path, write_idx):
    labels = np.arange(7, dtype=np.uint8)
    gz_without_suffix = write_idx(tmp_path / "labels-idx1-ubyte", labels, gz=True)
    plain_with_suffix = write_idx(tmp_path / "other-idx1-ubyte.gz", labels)
    np.testing.assert_array_equal(read_idx(gz_without_suffix), labels)
    np.testing.assert_array_equal(read_idx(plain_with_suffix), labels)


@pytest.fixture
def images_file(tmp_path, write_idx):
    images = np.arange(10 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(10, 28, 28)
    return write_idx(tmp_path / "train-images-idx3-ubyte", images)


def test_truncated_file(images_file):
    images_file.write_bytes(images_file.read_bytes()[: 16 + 1000])
    with pytest.raises(CorruptDataError) as info:
        read_idx(images_file)
    message = str(info.value)
    assert str(images_file) in message
    assert "expected 7840 bytes of data (10x28x28 of uint8), found 1000 (truncated" in message


def test_trailing_garbage(images_file):
    images_file.write_bytes(images_file.read_bytes() + b"xyz")
    with pytest.raises(
        CorruptDataError, match=r"expected 7840 bytes of data .*found 7843 \(trailing"
    ):
        read_idx(images_file)


def test_wrong_magic(images_file):
    images_file.write_bytes(b"\x01\x02" + images_file.read_bytes()[2:])
    with pytest.raises(CorruptDataError, match="bad magic number 01 02 08 03"):
        read_idx(images_file)


def test_unknown_type_code(images_file):
    data = bytearray(images_file.read_bytes())
    data[2] = 0x07
    images_file.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="unknown type code 0x07"):
        read_idx(images_file)


def test_short_header_and_tiny_file(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x0a")
    with pytest.raises(
        CorruptDataError, match="declares 3 dimensions, which need a 16-byte header"
    ):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(CorruptDataError, match="2 bytes long, too short"):
        read_idx(path)


def test_corrupt_gzip_streams(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError, match="not a valid gzip stream") as info:
        read_idx(truncated)
    assert str(truncated) in str(info.value)
    damaged = bytearray(data)
    for i in range(20, 40):
        damaged[i] ^= 0xFF
    flipped = tmp_path / "damaged.gz"
    flipped.write_bytes(bytes(damaged))
    with pytest.raises(CorruptDataError, match="not a valid gzip stream"):
        read_idx(flipped)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_idx(tmp_path / "absent")


def test_find_idx_accepts_plain_gz_and_dotted_names(tmp_path, write_idx):
    labels = np.zeros(3, dtype=np.uint8)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, gz=True)
    write_idx(tmp_path / "train-images.idx3-ubyte", labels)
    assert find_idx(tmp_path, "train-labels-idx1-ubyte").name == "train-labels-idx1-ubyte"
    assert find_idx(tmp_path, "t10k-labels-idx1-ubyte").name == "t10k-labels-idx1-ubyte.gz"
    assert find_idx(tmp_path, "train-images-idx3-ubyte").name == "train-images.idx3-ubyte"
    with pytest.raises(DatasetNotFoundError) as info:
        find_idx(tmp_path, "t10k-images-idx3-ubyte")
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(tmp_path) in message
