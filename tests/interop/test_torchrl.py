"""TorchRL over our envs through its own wrappers: ``GymEnv`` (one env, and ``num_envs=4``),
``GymWrapper`` over Gymnasium vector envs and our ``RoutingVectorEnv``, and
``PettingZooWrapper`` over the game, each passing ``check_env_specs`` and a short rollout.

TorchRL 0.14.1 bugs shape how they are built (each pinned below by an xfail test, which turns
XPASS once TorchRL fixes it; the recipes are in docs/interop_recipes.md):

1. ``GymEnv(id, num_envs=N)`` builds Gymnasium's ``AsyncVectorEnv`` with its default NEXT_STEP
   autoreset (which ``GymWrapper`` itself refuses) and then reads a ``final_obs`` that never
   comes: the "next" observation and info at every route end are zeros, and a terminal
   observation comes back as a root one. Under the default one-hot encoding of a ``Discrete``
   observation (our ``task`` and ``depth``) the zeros also fail the spec check (Gymnasium's
   ``FrozenLake-v1`` fails the same way); ``categorical_action_encoding=True`` lets them pass
   but they stay zeros. Recipe: ``GymWrapper`` over ``gym.make_vec(...)`` with
   ``autoreset_mode=DISABLED`` (TorchRL's preferred mode) or SAME_STEP with a flat observation.
2. With SAME_STEP autoreset, the terminal observation of a ``Dict`` observation space is
   zero-filled (its keys are looked up in ``final_info``, not ``final_obs``):
   ``flatten_observation=True`` (one ``"observation"`` key) avoids it.
3. ``default_info_dict_reader`` (``auto_register_info_dict``) calls ``.dtype`` on every info
   value, so on a single env our Python ``bool`` / ``int`` / ``float`` infos raise; on a vector
   env Gymnasium has stacked them into arrays first, and it works.
4. ``PettingZooWrapper`` crashes at reset when ``action_mask`` is in the observation *and* in
   the info: it removes the key from the observation only, then fills an info entry whose
   spec it deleted. Our ``info["action_mask"]`` is always there, so keep the default
   ``mask_in_observation=False``: TorchRL reads the mask from the info (its documented second
   source) and masks its action spec with it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

torchrl = pytest.importorskip("torchrl")

import torch  # noqa: E402
from torchrl.envs import (  # noqa: E402
    ActionMask,
    GymEnv,
    GymWrapper,
    PettingZooWrapper,
    TransformedEnv,  # noqa: E402
)
from torchrl.envs.utils import check_env_specs  # noqa: E402

import routing_env  # noqa: E402, F401  (registers the ids)
from routing_env import routing_game_v0  # noqa: E402

from ._contract import (  # noqa: E402
    ACTIVATION_DIM,
    ENV_ID,
    FLAT_DIM,
    MAX_DEPTH,
    NUM_ACTIONS,
    NUM_TASKS,
)

# GymEnv(num_envs=N) runs Gymnasium's AsyncVectorEnv, and importing TorchRL makes "spawn" the
# start method: a spawned worker imports nothing of ours, so the id names its module
# (Gymnasium's "module:id" form) for the worker to import, which registers the ids.
SPAWN_SAFE_ID = f"routing_env:{ENV_ID}"
ROLLOUT = 30


def _route_ends(done: torch.Tensor, reward: torch.Tensor) -> None:
    """Rewards are paid at route ends only: +1 / -1 (no collaboration reward)."""
    done, reward = done.squeeze(-1), reward.squeeze(-1)
    assert done.any()
    assert set(reward[done].tolist()) <= {-1.0, 1.0}
    assert (reward[~done] == 0).all()


def test_gymenv_single() -> None:
    env = GymEnv(ENV_ID)
    spec = env.observation_spec
    assert spec["activation"].shape == (ACTIVATION_DIM,)
    assert spec["task"].shape == (NUM_TASKS,) and spec["depth"].shape == (MAX_DEPTH + 1,)
    check_env_specs(env, seed=0)
    rollout = env.rollout(ROLLOUT, break_when_any_done=False)
    assert rollout.batch_size == (ROLLOUT,)
    assert rollout["action"].shape == (ROLLOUT, NUM_ACTIONS)  # one-hot by default
    _route_ends(rollout["next", "done"], rollout["next", "reward"])


def test_gymenv_masks_actions_from_the_observation() -> None:
    """``mask_in_observation=True`` puts the mask where TorchRL's ``ActionMask`` transform
    reads it: random actions are then always allowed, so every route runs its ``max_depth``
    decisions (a masked action would end it early)."""
    env = TransformedEnv(
        GymEnv(ENV_ID, mask_in_observation=True, categorical_action_encoding=True), ActionMask()
    )
    check_env_specs(env, seed=0)
    rollout = env.rollout(60, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    steps = torch.arange(1, 61)
    assert (done == (steps % MAX_DEPTH == 0)).all()
    mask = rollout["action_mask"].bool()
    assert mask.gather(1, rollout["action"].unsqueeze(1)).all()
    # The terminal observation's mask is all ones: drawable, and no one acts on it.
    assert (rollout["next", "action_mask"][done] == 1).all()
    _route_ends(rollout["next", "done"], rollout["next", "reward"])


@pytest.mark.xfail(
    reason="TorchRL 0.14.1 bug: default_info_dict_reader reads val.dtype, so a Python "
    "bool / int / float info value raises AttributeError",
    raises=AttributeError,
    strict=False,
)
def test_gymenv_single_info_reader_bug() -> None:
    """Pins the bug: reading infos on a single GymEnv needs NumPy-typed values, while
    Gymnasium's vector envs want Python scalars (they stack a NumPy ``bool_`` as an object
    array). Infos are read through the vectorised wrappers below instead, where Gymnasium
    has stacked them into arrays first."""
    env = GymEnv(ENV_ID)
    env.auto_register_info_dict()
    env.rollout(3)


def _terminal_depths(rollout, flat: bool) -> torch.Tensor:
    """The depth in the "next" observation: one-hot under the flat layout."""
    if flat:
        return rollout["next", "observation"][..., -(MAX_DEPTH + 1) :].argmax(-1)
    return rollout["next", "depth"]


def _check_batched_rollout(rollout, flat: bool) -> None:
    """A batched rollout holds true transitions: each "next" observation is the one the step
    produced (the terminal one at a route's end, its depth the route's length), and every
    root observation is a live route's (no transition out of a terminal observation)."""
    done = rollout["next", "done"].squeeze(-1)
    _route_ends(rollout["next", "done"], rollout["next", "reward"])
    depth = _terminal_depths(rollout, flat)
    root = rollout["observation"][..., -(MAX_DEPTH + 1) :].argmax(-1) if flat else rollout["depth"]
    assert (root < MAX_DEPTH).all()
    assert (depth == root + 1).all(), "a next observation is not the one its step produced"
    # The infos are read into the rollout; at a route's end, the finished route's.
    nxt = rollout["next"]
    assert (nxt["route_done"].squeeze(-1) == done).all()
    reward = nxt["reward"].squeeze(-1)[done]
    assert (reward == torch.where(nxt["correct"].squeeze(-1)[done].bool(), 1.0, -1.0)).all()
    assert ((nxt["path"][done] >= 0).sum(-1) == depth[done]).all()


def _vector(mode: str, autoreset: AutoresetMode, **kwargs) -> gym.vector.VectorEnv:
    vector_kwargs = {} if mode == "vector_entry_point" else {"autoreset_mode": autoreset}
    if mode == "async":
        # Forked workers start in a fraction of a second (spawned ones re-import torch).
        vector_kwargs["context"] = "fork"
    return gym.make_vec(ENV_ID, num_envs=4, vectorization_mode=mode,
                        vector_kwargs=vector_kwargs, **kwargs)  # fmt: skip


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymwrapper_disabled_autoreset(mode: str) -> None:
    """The recipe for batched TorchRL: wrap a Gymnasium vector env whose autoreset is
    DISABLED (the mode TorchRL prefers: it resets finished sub-envs itself through
    ``reset_mask``). Dict observations and the default one-hot encoding work; the infos
    (already stacked by Gymnasium into arrays) are read with ``auto_register_info_dict``."""
    env = GymWrapper(_vector(mode, AutoresetMode.DISABLED))
    try:
        assert env.batch_size == (4,)
        env.auto_register_info_dict()
        check_env_specs(env, seed=0)
        rollout = env.rollout(ROLLOUT, break_when_any_done=False)
    finally:
        env.close()
    assert rollout.batch_size == (4, ROLLOUT)
    assert rollout["activation"].shape == (4, ROLLOUT, ACTIVATION_DIM)
    rollout["depth"] = rollout["depth"].argmax(-1)  # one-hot -> index for the checks
    rollout["next", "depth"] = rollout["next", "depth"].argmax(-1)
    _check_batched_rollout(rollout, flat=False)


@pytest.mark.parametrize("mode", ["sync", "vector_entry_point"])
def test_gymwrapper_same_step_autoreset_flat(mode: str) -> None:
    """SAME_STEP autoreset (Gymnasium's option, and our ``RoutingVectorEnv``'s mode): TorchRL
    reads the terminal observation from ``infos["final_obs"]``, correctly for a flat ``Box``
    observation (``flatten_observation=True``; for a Dict see the bug below)."""
    env = GymWrapper(_vector(mode, AutoresetMode.SAME_STEP, flatten_observation=True))
    check_env_specs(env, seed=0)
    rollout = env.rollout(ROLLOUT, break_when_any_done=False)
    assert rollout["observation"].shape == (4, ROLLOUT, FLAT_DIM)
    _check_batched_rollout(rollout, flat=True)


@pytest.mark.xfail(
    reason="TorchRL 0.14.1 bug: terminal_obs_reader looks a Dict observation's keys up in "
    "final_info instead of final_obs, so the terminal observation is zero-filled",
    raises=AssertionError,
    strict=False,
)
def test_gymwrapper_same_step_dict_terminal_observation_bug() -> None:
    """Pins the bug the flat observation avoids (``categorical_action_encoding=True`` only
    lets the zeros pass the spec check: they are still zeros)."""
    env = GymWrapper(_vector("sync", AutoresetMode.SAME_STEP), categorical_action_encoding=True)
    rollout = env.rollout(ROLLOUT, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    assert (rollout["next", "depth"][done] > 0).all()


@pytest.mark.slow  # GymEnv spawns its workers: about 10 s per env on 2 cores
def test_gymenv_num_envs() -> None:
    """``GymEnv(id, num_envs=4)``: it builds Gymnasium's AsyncVectorEnv with the default
    NEXT_STEP autoreset, which TorchRL's own GymWrapper refuses; the specs check and the
    rollout's shapes are right under ``categorical_action_encoding=True``, its terminal
    transitions are not (next test): use the GymWrapper recipes above."""
    env = GymEnv(SPAWN_SAFE_ID, num_envs=4, categorical_action_encoding=True)
    try:
        assert env.batch_size == (4,)
        check_env_specs(env, seed=0)
        rollout = env.rollout(ROLLOUT, break_when_any_done=False)
        with pytest.raises(AssertionError):
            # TorchRL 0.14.1 bug, pinned: the terminal observations are zeros, the final
            # infos are lost, and a terminal observation comes back as a root one.
            _check_batched_rollout(rollout, flat=False)
    finally:
        env.close()
    assert rollout.batch_size == (4, ROLLOUT)
    assert rollout["activation"].shape == (4, ROLLOUT, ACTIVATION_DIM)
    assert rollout["task"].shape == (4, ROLLOUT)  # categorical: integers
    _route_ends(rollout["next", "done"], rollout["next", "reward"])


@pytest.mark.slow
@pytest.mark.xfail(
    reason="TorchRL 0.14.1 bug: GymEnv(num_envs=N) zero-fills the final observation, "
    "invalid under the default one-hot spec of a Discrete observation",
    raises=AssertionError,
    strict=False,
)
def test_gymenv_num_envs_one_hot_bug() -> None:
    """Pins the bug ``categorical_action_encoding=True`` avoids (Gymnasium's
    ``FrozenLake-v1`` fails the same way)."""
    env = GymEnv(SPAWN_SAFE_ID, num_envs=2)
    try:
        check_env_specs(env, seed=0)
    finally:
        env.close()


def _game(**kwargs) -> PettingZooWrapper:
    return PettingZooWrapper(
        routing_game_v0.parallel_env(dataset="synthetic-mtl", **kwargs),
        use_mask=True,
        return_state=True,
    )


def test_pettingzoo_wrapper_parallel_game() -> None:
    env = _game()
    assert env.group_map == {"router": [f"router_{t}" for t in range(NUM_TASKS)]}
    check_env_specs(env, seed=0)
    rollout = env.rollout(ROLLOUT, break_when_any_done=False)
    group = rollout["next", "router"]
    assert group["observation", "activation"].shape == (ROLLOUT, NUM_TASKS, ACTIVATION_DIM)
    assert rollout["router", "action_mask"].shape == (ROLLOUT, NUM_TASKS, NUM_ACTIONS)
    done = group["done"].squeeze(-1)
    # Fixed agent set: every router acts at every step of a round, and all leave together
    # when it ends (TorchRL's "mask" marks the agents still in ``agents``).
    assert rollout["router", "mask"].all()
    assert (group["mask"] == ~done).all()
    # The action spec is masked with info["action_mask"]: random actions are always allowed,
    # so every layered route lasts max_depth steps and all routers end together.
    assert not group["info", "invalid_action"].bool().any()
    assert (done.all(dim=1) == done.any(dim=1)).all()
    steps = torch.arange(1, ROLLOUT + 1)
    assert (done.all(dim=1) == (steps % MAX_DEPTH == 0)).all()
    reward = group["reward"].squeeze(-1)
    assert set(reward[done].tolist()) <= {-1.0, 1.0} and (reward[~done] == 0).all()
    assert rollout["next", "state"].dtype == torch.float32
    np.testing.assert_array_equal(
        rollout["next", "router", "info", "route_done"].bool().numpy(), done.numpy()
    )


def test_pettingzoo_wrapper_flat_game() -> None:
    env = _game(flatten_observation=True)
    check_env_specs(env, seed=0)
    rollout = env.rollout(ROLLOUT, break_when_any_done=False)
    assert rollout["router", "observation"].shape == (ROLLOUT, NUM_TASKS, FLAT_DIM)


@pytest.mark.xfail(
    reason="TorchRL 0.14.1 bug: PettingZooWrapper crashes at reset when action_mask is both "
    "in the observation and in the info",
    raises=TypeError,
    strict=False,
)
def test_pettingzoo_wrapper_mask_in_observation_bug() -> None:
    """Pins the bug the other tests avoid; it passes (XPASS) once TorchRL fixes it."""
    env = _game(mask_in_observation=True)
    env.rollout(3)


def test_torchrl_ppo_example_runs() -> None:
    """examples/torchrl_ppo.py end to end on a tiny budget (it learns with its default)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "torchrl_ppo.py"
    result = subprocess.run(
        [sys.executable, str(example), "--frames", "2048", "--num-envs", "8"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    match = re.search(r"TorchRL PPO: 2048 frames .* test accuracy (\d\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert 0.0 <= float(match.group(1)) <= 1.0
