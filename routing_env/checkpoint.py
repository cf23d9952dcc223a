"""Checkpoint files: written atomically, read without executing code (DESIGN 7, "Checkpoints").

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, booleans,
``None`` and lists / tuples / dicts of them. :func:`write_checkpoint` writes it to a temporary
file in the same folder and renames it over the target, so a crash during the write leaves the
previous checkpoint whole. :func:`read_checkpoint` loads it with ``torch.load(weights_only=True)``
(a pickle that names any other object is refused, so nothing runs), then checks the format, its
version and, when asked, the dataset it was made on; every refusal is a
:class:`CheckpointError` naming the file and the problem in one line.

NumPy arrays and random generators are stored through :func:`to_plain` / :func:`from_plain`:
arrays as tensors, and a generator's bit-generator state as plain numbers.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from routing_env.datasets import MultiTaskDataset

#: The ``format`` field of every checkpoint this package writes.
FORMAT = "routing-env-checkpoint"
#: The version of the layout; a file of another version is refused.
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated or corrupt, of another format or
    version, unsafe (it would run code), or made on other data."""


def dataset_fingerprint(dataset: MultiTaskDataset) -> dict[str, Any]:
    """The dataset's name and content hash (:attr:`MultiTaskDataset.content_hash`): a resumed
    run refuses other data."""
    return {"name": dataset.name, "sha256": dataset.content_hash}


def to_plain(value: Any) -> Any:
    """``value`` with NumPy arrays as tensors and NumPy scalars as Python numbers, recursively
    (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be stored in a checkpoint")
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(item) for item in value)
    return value


def from_plain(value: Any) -> Any:
    """The inverse of :func:`to_plain`."""
    if isinstance(value, Mapping):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy().copy()
        return {key: from_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(from_plain(item) for item in value)
    return value


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy generator's state as plain numbers (the bit generator's ``state`` dict)."""
    return to_plain(rng.bit_generator.state)


def restore_generator(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Put ``rng`` back into the state :func:`generator_state` recorded."""
    rng.bit_generator.state = from_plain(dict(state))


def network_state(network: Any) -> dict[str, Any]:
    """A routed network's parameters, module trainer (optimizer, update count, queued routes)
    and selection window, as plain values and tensors."""
    return {
        "parameters": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "trainer": network.trainer_state(),
        "selection_history": to_plain(network.selection_history.state_dict()),
    }


def restore_network(network: Any, state: Mapping[str, Any]) -> None:
    """Load a :func:`network_state` into a network of the same structure, in place."""
    try:
        network.load_state_dict(state["parameters"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"the checkpoint's network has another structure ({first})") from None
    network.load_trainer_state(state["trainer"])
    network.selection_history.load_state_dict(from_plain(state["selection_history"]))


def write_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> str:
    """Write ``payload`` (plain values and tensors, see :func:`to_plain`) to ``path``
    atomically, as this module's format and version; returns the path."""
    return write_checkpoint_file(path, {"format": FORMAT, "version": VERSION, **payload})


def write_checkpoint_file(path: str | os.PathLike, content: Mapping[str, Any]) -> str:
    """``torch.save`` of ``content`` to ``path`` through a temporary file in the same folder,
    renamed over ``path`` (a crash leaves the previous file whole); returns the path."""
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(dict(content), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return target


def read_checkpoint(
    path: str | os.PathLike, dataset: MultiTaskDataset | None = None
) -> dict[str, Any]:
    """The payload of the checkpoint at ``path``, loaded without executing code.

    Args:
        path: the checkpoint file.
        dataset: when given, the checkpoint must have been made on this dataset (same name and
            content hash).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CheckpointError(f"checkpoint {name}: no such file")
    if not zipfile.is_zipfile(name):
        raise CheckpointError(f"checkpoint {name}: truncated or corrupt (not a complete file)")
    try:
        content = torch.load(name, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise CheckpointError(
            f"checkpoint {name}: refused, it holds objects a checkpoint never has ({reason})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {name}: truncated or corrupt ({first})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {name}: not a routing-env checkpoint")
    if content.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {name}: format version {content.get('version')!r}, this routing-env "
            f"reads version {VERSION}"
        )
    if dataset is not None:
        expected = dataset_fingerprint(dataset)
        found = content.get("dataset")
        if found != expected:
            found_name = found.get("name") if isinstance(found, dict) else found
            raise CheckpointError(
                f"checkpoint {name}: made on dataset {found_name!r} with other content than "
                f"{expected['name']!r} (content hash differs); resume it on its own data"
            )
    return content
