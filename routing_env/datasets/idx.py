"""Reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzipped."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from routing_env.datasets.base import CorruptDataError, DatasetNotFoundError

__all__ = ["find_idx", "read_idx"]

GZIP_MAGIC = b"\x1f\x8b"
#: IDX type code -> element dtype; IDX data is big-endian.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise DatasetNotFoundError(f"IDX file {path} does not exist") from error
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptDataError(
            f"IDX file {path} starts like gzip but is not a valid gzip stream "
            f"(truncated or damaged download?): {error}"
        ) from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file into an array of its dims, in native byte order.

    Gzip compression is detected from the content (bytes ``1f 8b``), not the file name.

    Raises:
        DatasetNotFoundError: the file does not exist.
        CorruptDataError: naming the file and the problem: a bad gzip stream, a bad magic
            number or type code, a short header, or a payload that is not exactly
            ``prod(dims) * itemsize`` bytes (truncated file or trailing bytes).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptDataError(
            f"IDX file {path} is {len(data)} bytes long, too short for the 4-byte magic number"
        )
    if data[0] != 0 or data[1] != 0:
        raise CorruptDataError(
            f"IDX file {path} has a bad magic number {data[:4].hex(' ')}: an IDX file starts "
            f"with two zero bytes, a type code and the number of dimensions"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise CorruptDataError(
            f"IDX file {path} has unknown type code 0x{type_code:02X} (known: {known})"
        )
    if ndim == 0:
        raise CorruptDataError(f"IDX file {path} declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise CorruptDataError(
            f"IDX file {path} declares {ndim} dimensions, which need a {header_len}-byte "
            f"header, but the file holds only {len(data)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    # Python ints: the product of corrupt dims must not overflow into a plausible size.
    expected = dtype.itemsize
    for d in dims:
        expected *= d
    found = len(data) - header_len
    if found != expected:
        shape = "x".join(str(d) for d in dims)
        raise CorruptDataError(
            f"IDX file {path}: expected {expected} bytes of data ({shape} of {dtype.name}), "
            f"found {found}" + (" (truncated file?)" if found < expected else " (trailing bytes)")
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # astype copies, so the result is writable and owns native-order memory.
    return array.astype(dtype.newbyteorder("="))


def _candidate_names(stem: str) -> list[str]:
    """File names that may hold ``stem``: as given or gzipped, with ``-idx`` or ``.idx``."""
    stems = [stem]
    for a, b in (("-idx", ".idx"), (".idx", "-idx")):
        if a in stem:
            stems.append(stem.replace(a, b))
    return [name for s in stems for name in (s, s + ".gz")]


def find_idx(data_dir: str | os.PathLike, stem: str) -> Path:
    """Locate the IDX file ``stem`` (e.g. ``"train-images-idx3-ubyte"``) in ``data_dir``.

    Accepts the name as given or with ``.gz``, and the standard ``train-``/``t10k-`` names
    written with a dot (``train-images.idx3-ubyte``), as some mirrors ship them.

    Raises:
        DatasetNotFoundError: none of those files exists, naming the names tried.
    """
    directory = Path(data_dir)
    candidates = _candidate_names(stem)
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    raise DatasetNotFoundError(
        f"no IDX file for {stem!r} in {directory} (looked for {', '.join(candidates)})"
    )
