import codecs
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from routing_env.datasets import CorruptDataError, DatasetNotFoundError, load_suite
from routing_env.datasets.cifar import load_cifar100_python

# A fixed fine -> coarse assignment that, like CIFAR-100's, is not in fine-label order.
FINE_TO_COARSE = np.random.default_rng(7).permutation(np.repeat(np.arange(20), 5))


def cifar_batch(per_fine: int, seed: int) -> dict:
    """A CIFAR-100-format batch: red channel = fine label, green = 100 + coarse, blue = 200."""
    rng = np.random.default_rng(seed)
    fine = rng.permutation(np.repeat(np.arange(100), per_fine))
    coarse = FINE_TO_COARSE[fine]
    data = np.empty((len(fine), 3072), dtype=np.uint8)
    data[:, :1024] = fine[:, None]
    data[:, 1024:2048] = 100 + coarse[:, None]
    data[:, 2048:] = 200
    return {
        b"filenames": [f"img_{i}.png".encode() for i in range(len(fine))],
        b"batch_label": b"training batch 1 of 1",
        b"fine_labels": fine.tolist(),
        b"coarse_labels": coarse.tolist(),
        b"data": data,
    }


def write_pickle(path: Path, obj: object) -> None:
    # Protocol 2 with bytes keys, as in the published files.
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=2)


@pytest.fixture
def cifar_dir(tmp_path) -> Path:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_pickle(folder / "train", cifar_batch(per_fine=3, seed=0))
    write_pickle(folder / "test", cifar_batch(per_fine=1, seed=1))
    return tmp_path


def test_reads_python_version_files(cifar_dir):
    train, test = load_cifar100_python(cifar_dir)
    assert train.images.shape == (300, 3, 32, 32) and train.images.dtype == np.uint8
    assert test.images.shape == (100, 3, 32, 32)
    expected = cifar_batch(per_fine=3, seed=0)
    np.testing.assert_array_equal(train.fine_labels, expected[b"fine_labels"])
    np.testing.assert_array_equal(train.coarse_labels, expected[b"coarse_labels"])
    # Channels first: each channel is one contiguous 1024-byte block of the row.
    np.testing.assert_array_equal(train.images[:, 0, 5, 7], train.fine_labels)
    np.testing.assert_array_equal(train.images[:, 1, 31, 0], 100 + train.coarse_labels)
    # The same files directly in data_dir (no cifar-100-python subfolder) are found too.
    direct_train, _ = load_cifar100_python(cifar_dir / "cifar-100-python")
    np.testing.assert_array_equal(direct_train.images, train.images)


def test_cifar_mtl_tasks_are_coarse_labels_with_ranked_fine_classes(cifar_dir):
    data = load_suite("cifar-mtl", data_dir=cifar_dir)
    assert (data.num_tasks, data.num_classes, data.input_shape) == (20, 5, (3, 32, 32))
    assert data.train.x.dtype == np.float32 and len(data.train) == 300 and len(data.test) == 100
    assert data.train.x.min() >= 0 and data.train.x.max() <= 1
    for split in (data.train, data.test):
        fine = np.rint(split.x[:, 0, 0, 0] * 255).astype(int)
        coarse = np.rint(split.x[:, 1, 0, 0] * 255).astype(int) - 100
        np.testing.assert_array_equal(split.task, coarse)
        np.testing.assert_array_equal(split.task, FINE_TO_COARSE[fine])
        assert (np.diff(split.task) >= 0).all()  # grouped by task
        for i in range(len(split)):
            classes = sorted(np.flatnonzero(FINE_TO_COARSE == split.task[i]).tolist())
            assert split.y[i] == classes.index(fine[i])
    assert np.bincount(data.train.task).tolist() == [15] * 20
    assert np.bincount(data.train.y).tolist() == [60] * 5


def test_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_suite("cifar-mtl", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "data_dir=" in message and "cifar-100-python.tar.gz" in message
    with pytest.raises(DatasetNotFoundError, match="no data_dir was given.*tar.gz.*data_dir="):
        load_suite("cifar-mtl")


def python2_pickle(batch: dict) -> bytes:
    """The batch as Python 2's cPickle (protocol 2) wrote the published files: byte-string keys
    and array data as SHORT_BINSTRING/BINSTRING opcodes, arrays via numpy.core.multiarray."""

    def string(raw: bytes) -> bytes:
        if len(raw) < 256:
            return b"U" + bytes([len(raw)]) + raw
        return b"T" + struct.pack("<I", len(raw)) + raw

    def int_list(values: list[int]) -> bytes:
        return b"](" + b"".join(b"K" + bytes([v]) for v in values) + b"e"

    data = batch[b"data"]
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + string(b"b")
        + b"\x87R(K\x01J"
        + struct.pack("<i", data.shape[0])
        + b"J"
        + struct.pack("<i", 3072)
        + b"\x86cnumpy\ndtype\n"
        + string(b"u1")
        + b"K\x00K\x01\x87R(K\x03"
        + string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + string(data.tobytes())
        + b"tb"
    )
    return (
        b"\x80\x02}("
        + string(b"data")
        + array
        + string(b"fine_labels")
        + int_list(batch[b"fine_labels"])
        + string(b"coarse_labels")
        + int_list(batch[b"coarse_labels"])
        + b"u."
    )


def test_reads_files_written_by_python_2(tmp_path, cifar_dir):
    folder = tmp_path / "python2"
    folder.mkdir()
    for name, seed, per_fine in (("train", 0, 3), ("test", 1, 1)):
        blob = python2_pickle(cifar_batch(per_fine, seed))
        assert b"numpy._core" not in blob and b"_codecs" not in blob
        (folder / name).write_bytes(blob)
    from_python2 = load_suite("cifar-mtl", data_dir=folder)
    from_python3 = load_suite("cifar-mtl", data_dir=cifar_dir)
    for name in ("train", "test"):
        for field in ("x", "task", "y"):
            np.testing.assert_array_equal(
                getattr(from_python2.split(name), field), getattr(from_python3.split(name), field)
            )


class RunsShell:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsEval:
    """Unpickling this evaluates Python code that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize(("payload", "refused"), [(RunsShell, "system"), (RunsEval, "eval")])
def test_malicious_pickle_is_refused_before_running(tmp_path, payload, refused):
    marker = tmp_path / "marker"
    batch = cifar_batch(per_fine=1, seed=0)
    batch[b"data"] = payload(marker)
    blob = pickle.dumps(batch, protocol=2)
    # The payload is live: a plain pickle.loads would create the marker.
    pickle.loads(blob)
    assert marker.exists()
    marker.unlink()

    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "train").write_bytes(blob)
    write_pickle(folder / "test", cifar_batch(per_fine=1, seed=1))
    with pytest.raises(CorruptDataError) as info:
        load_suite("cifar-mtl", data_dir=folder)
    message = str(info.value)
    assert f"refusing to load {folder / 'train'}" in message
    assert f".{refused};" in message
    assert "only arrays, lists, dicts, numbers and strings are allowed" in message
    assert not marker.exists()


class OtherCodec:
    def __reduce__(self):
        return (codecs.encode, ("abc", "rot13"))


def test_codec_other_than_latin1_is_refused(tmp_path):
    write_pickle(tmp_path / "train", {b"data": OtherCodec()})
    write_pickle(tmp_path / "test", cifar_batch(per_fine=1, seed=1))
    with pytest.raises(CorruptDataError, match="codec 'rot13'"):
        load_cifar100_python(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a pickle at all", "not a readable CIFAR-100 pickle"),
        (pickle.dumps([1, 2, 3], protocol=2), "holds a list, expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "lacks fine_labels"),
        (
            pickle.dumps(
                {
                    b"data": np.zeros((2, 3072), np.uint8),
                    b"fine_labels": [1],
                    b"coarse_labels": [0, 0],
                },
                protocol=2,
            ),
            r"fine_labels has shape \(1,\), expected \(2,\)",
        ),
        (
            pickle.dumps(
                {b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [], b"coarse_labels": []},
                protocol=2,
            ),
            "100 values per image, expected 3072",
        ),
    ],
    ids=["garbage", "list", "missing-key", "label-count", "image-size"],
)
def test_malformed_files(tmp_path, content, message):
    (tmp_path / "train").write_bytes(content)
    write_pickle(tmp_path / "test", cifar_batch(per_fine=1, seed=1))
    with pytest.raises(CorruptDataError, match=message):
        load_cifar100_python(tmp_path)
