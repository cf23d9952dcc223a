"""The info contract of DESIGN 3.1, written once for the interoperability tests.

Every env (single, vector, game) returns the same info keys, with the same types and shapes, at
reset, at every step and at a route's end, never ``None`` or NaN: Gymnasium's vector envs,
TorchRL, Tianshou and SuperSuit stack infos across sub-environments and steps and rely on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

ENV_ID = "routing_env/SyntheticMTL-v0"
# SyntheticMTL: 16 inputs, 6 tasks, 3 routed layers of 6 modules and the 64-unit activation.
ACTIVATION_DIM, NUM_TASKS, MAX_DEPTH, NUM_ACTIONS = 64, 6, 3, 7
FLAT_DIM = ACTIVATION_DIM + NUM_TASKS + MAX_DEPTH + 1
# PASS (the last action) is allowed only where a layer keeps the size: not at depth 0 (16 -> 64
# inputs) nor at depth 2 (64 -> 2 logits).
LIVE_MASKS = {
    0: np.array([1, 1, 1, 1, 1, 1, 0], dtype=np.int8),
    1: np.ones(NUM_ACTIONS, dtype=np.int8),
    2: np.array([1, 1, 1, 1, 1, 1, 0], dtype=np.int8),
}

BOOL_KEYS = ("route_done", "correct", "invalid_action")
INT_KEYS = ("prediction", "label", "sample_index")
FLOAT_KEYS = ("loss", "final_reward")
ARRAY_KEYS = {"action_mask": (np.int8, "n_actions"), "path": (np.int64, "max_depth")}
INFO_KEYS = frozenset(BOOL_KEYS + INT_KEYS + FLOAT_KEYS + tuple(ARRAY_KEYS))


def check_info(
    info: Mapping[str, Any],
    num_actions: int = NUM_ACTIONS,
    max_depth: int = MAX_DEPTH,
    python_scalars: bool = True,
) -> None:
    """One sub-environment's info obeys the contract, types and values.

    ``python_scalars``: the scalars must be Python ``bool`` / ``int`` / ``float`` (what a
    single env returns; a NumPy ``bool_`` would make Gymnasium's vector envs stack the key as
    an object array). With ``False`` NumPy scalars of the right kind pass too (infos read back
    from a stacked array).
    """
    keys = set(info)
    assert INFO_KEYS <= keys, f"info lacks {sorted(INFO_KEYS - keys)}"
    assert "task" not in info, "the task is in the observation, not in the info"
    for key in BOOL_KEYS:
        value = info[key]
        ok = type(value) is bool or (not python_scalars and isinstance(value, np.bool_))
        assert ok, f"info[{key!r}] = {value!r} ({type(value).__name__}), expected a bool"
    for key in INT_KEYS:
        value = info[key]
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        assert ok, f"info[{key!r}] = {value!r} ({type(value).__name__}), expected an int"
    for key in FLOAT_KEYS:
        value = info[key]
        assert isinstance(value, (float, np.floating)), (
            f"info[{key!r}] = {value!r} ({type(value).__name__}), expected a float"
        )
        assert math.isfinite(value), f"info[{key!r}] = {value!r}"
    sizes = {"n_actions": num_actions, "max_depth": max_depth}
    for key, (dtype, size) in ARRAY_KEYS.items():
        value = info[key]
        assert isinstance(value, np.ndarray), f"info[{key!r}] is {type(value).__name__}"
        assert value.dtype == dtype and value.shape == (sizes[size],), (
            f"info[{key!r}]: {value.dtype} {value.shape}, expected {np.dtype(dtype)} "
            f"({sizes[size]},)"
        )

    mask, path = info["action_mask"], info["path"]
    assert set(np.unique(mask)) <= {0, 1}
    taken = path[path >= 0]
    assert (path[: taken.size] == taken).all(), f"path {path} is not padded at the end"
    assert ((taken >= 0) & (taken < num_actions)).all()
    assert info["sample_index"] >= 0
    if not info["route_done"]:
        assert mask.any(), "a live route's mask allows no action"
        not_final = {"correct": False, "loss": -1.0, "prediction": -1, "label": -1,
                     "final_reward": 0.0, "invalid_action": False}  # fmt: skip
        got = {key: info[key] for key in not_final}
        assert got == not_final, f"not-final values before the route's end: {got}"
        return
    # A finished route: its mask is drawable by a masked sampler, and no one acts on it.
    assert mask.all(), f"the mask after a route's end is {mask}, expected all ones"
    assert info["label"] >= 0
    if info["invalid_action"]:
        assert not info["correct"]
        assert info["loss"] == -1.0 and info["prediction"] == -1
    else:
        assert info["prediction"] >= 0 and info["loss"] >= 0.0
        assert bool(info["correct"]) == (info["prediction"] == info["label"])


def stacked_dtypes() -> dict[str, np.dtype]:
    """What Gymnasium's ``VectorEnv._add_info`` makes of each key: Python ``bool`` / ``int``
    / ``float`` become ``bool`` / ``int64`` / ``float64`` arrays, arrays keep their dtype."""
    dtypes = {key: np.dtype(bool) for key in BOOL_KEYS}
    dtypes.update({key: np.dtype(np.int64) for key in INT_KEYS})
    dtypes.update({key: np.dtype(np.float64) for key in FLOAT_KEYS})
    dtypes.update({key: np.dtype(dtype) for key, (dtype, _) in ARRAY_KEYS.items()})
    return dtypes


def check_stacked_infos(
    infos: Mapping[str, Any],
    num_envs: int,
    num_actions: int = NUM_ACTIONS,
    max_depth: int = MAX_DEPTH,
) -> list[dict[str, Any]]:
    """Gymnasium-stacked infos: every key an array of the expected dtype, present for every
    sub-environment (``infos["_key"]`` all true); returns the per-env infos, each checked."""
    shapes = {"action_mask": (num_actions,), "path": (max_depth,)}
    for key, dtype in stacked_dtypes().items():
        array = infos[key]
        assert isinstance(array, np.ndarray) and array.dtype == dtype, (
            f"stacked infos[{key!r}]: {getattr(array, 'dtype', type(array))}, expected {dtype}"
        )
        assert array.shape == (num_envs, *shapes.get(key, ())), (key, array.shape)
        assert infos[f"_{key}"].all(), f"infos[{key!r}] missing for some sub-environments"
    assert "task" not in infos
    per_env = [{key: infos[key][i] for key in INFO_KEYS} for i in range(num_envs)]
    for info in per_env:
        check_info(info, num_actions, max_depth, python_scalars=False)
    return per_env


def check_flat_observation(obs: np.ndarray, task: int | None = None) -> None:
    """A ``flatten_observation=True`` observation: activation ⊕ one-hot(task) ⊕ one-hot(depth)."""
    assert obs.dtype == np.float32 and obs.shape == (FLAT_DIM,), (obs.dtype, obs.shape)
    task_part = obs[ACTIVATION_DIM : ACTIVATION_DIM + NUM_TASKS]
    depth_part = obs[ACTIVATION_DIM + NUM_TASKS :]
    for part in (task_part, depth_part):
        assert set(np.unique(part)) <= {0.0, 1.0} and part.sum() == 1.0, part
    if task is not None:
        assert int(task_part.argmax()) == task
