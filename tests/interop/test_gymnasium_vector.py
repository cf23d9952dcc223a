"""Gymnasium's own vector envs over RoutingEnv: ``gym.make_vec(id, num_envs=4,
vectorization_mode="sync" | "async")`` (SyncVectorEnv / AsyncVectorEnv), as CleanRL-style
scripts use them, with unmasked random actions (``envs.action_space.sample()``).

Gymnasium stacks every info key across the sub-environments into one array, typed by the first
value it sees; the info contract (same keys, types and shapes at reset, every step and the
route's end) is what makes those arrays well typed and always present. Our own batched
``RoutingVectorEnv`` must give the same stacked infos.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import routing_env  # noqa: F401  (registers the ids)

from ._contract import (
    ENV_ID,
    FLAT_DIM,
    INFO_KEYS,
    LIVE_MASKS,
    MAX_DEPTH,
    NUM_ACTIONS,
    check_flat_observation,
    check_stacked_infos,
)

NUM_ENVS = 4


class RouteBook:
    """Per sub-environment bookkeeping of a random run: checks each step against the actions
    taken so far, and counts finished routes."""

    def __init__(self, num_envs: int, autoreset_mode: AutoresetMode) -> None:
        self.mode = autoreset_mode
        self.taken: list[list[int]] = [[] for _ in range(num_envs)]
        self.masks = [LIVE_MASKS[0]] * num_envs
        self.resetting = [False] * num_envs  # NEXT_STEP: this step resets, the action is ignored
        self.routes = self.invalid = self.correct = 0

    def check_reset(self, i: int, depth: int, reward: float, done: bool, info: dict) -> None:
        assert depth == 0 and reward == 0.0 and not done
        assert not info["route_done"] and (info["path"] == -1).all()
        np.testing.assert_array_equal(info["action_mask"], LIVE_MASKS[0])
        self.taken[i], self.masks[i] = [], LIVE_MASKS[0]

    def check_end(self, i: int, reward: float, info: dict[str, Any]) -> None:
        """A finished route's info against what this sub-environment was sent."""
        taken = self.taken[i]
        np.testing.assert_array_equal(info["path"][: len(taken)], taken)
        assert (info["path"][len(taken) :] == -1).all()
        assert info["invalid_action"] == (self.masks[i][taken[-1]] == 0)
        assert info["route_done"] and info["action_mask"].all()
        # No collaboration reward: the step's reward is the final reward, +1 / -1.
        assert reward == info["final_reward"] == (1.0 if info["correct"] else -1.0)
        self.routes += 1
        self.invalid += bool(info["invalid_action"])
        self.correct += bool(info["correct"])

    def step(
        self,
        actions: np.ndarray,
        depths: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> None:
        assert not truncated.any(), "routes are never truncated"
        per_env = check_stacked_infos(infos, len(actions))
        final = None
        if self.mode == AutoresetMode.SAME_STEP and "final_info" in infos:
            final = infos["final_info"]
            np.testing.assert_array_equal(infos["_final_info"], terminated)
            np.testing.assert_array_equal(infos["_final_obs"], terminated)
        for i, info in enumerate(per_env):
            if self.resetting[i]:  # NEXT_STEP: the action was ignored, the env reset
                self.resetting[i] = False
                self.check_reset(i, int(depths[i]), float(rewards[i]), terminated[i], info)
                continue
            self.taken[i].append(int(actions[i]))
            ended_early = self.masks[i][int(actions[i])] == 0
            assert terminated[i] == (ended_early or len(self.taken[i]) == MAX_DEPTH)
            if not terminated[i]:
                assert depths[i] == len(self.taken[i]) and not info["route_done"]
                np.testing.assert_array_equal(info["action_mask"], LIVE_MASKS[int(depths[i])])
                self.masks[i] = info["action_mask"]
            elif self.mode == AutoresetMode.NEXT_STEP:
                self.check_end(i, float(rewards[i]), info)
                self.resetting[i] = True
            else:  # SAME_STEP: the final info is kept aside, the env already restarted
                assert final is not None
                end = {key: final[key][i] for key in INFO_KEYS}
                assert all(final[f"_{key}"][i] for key in INFO_KEYS)
                self.check_end(i, float(rewards[i]), end)
                self.check_reset(i, int(depths[i]), 0.0, False, info)


def random_run(
    envs: gym.vector.VectorEnv, steps: int, masked: bool = False, seed: int = 0
) -> RouteBook:
    """``steps`` steps of random actions (unmasked, or drawn from the observation's mask),
    checking observations and infos at every step."""
    mode = envs.metadata["autoreset_mode"]
    book = RouteBook(envs.num_envs, mode)
    obs, infos = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    check_stacked_infos(infos, envs.num_envs)
    for _ in range(steps):
        if masked:
            # MultiDiscrete.sample takes one int8 mask per sub-environment.
            actions = envs.action_space.sample(mask=tuple(obs["action_mask"]))
        else:
            actions = envs.action_space.sample()
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        assert envs.observation_space.contains(obs)
        if isinstance(obs, dict) and "observation" in obs:  # flatten + mask in the observation
            for row in obs["observation"]:
                check_flat_observation(row)
            depths = obs["observation"][:, -(MAX_DEPTH + 1) :].argmax(axis=1)
        else:
            depths = obs["depth"]
        if isinstance(obs, dict) and "action_mask" in obs:
            np.testing.assert_array_equal(obs["action_mask"], infos["action_mask"])
        book.step(actions, depths, rewards, terminated, truncated, infos)
    return book


@pytest.mark.parametrize(
    ("mode", "context"),
    [
        ("sync", None),
        # An explicit start method: importing TorchRL switches the process default to "spawn".
        # Under "spawn" each worker re-imports torch (about 3 s each on 2 cores), so the
        # default run forks and the spawn run is slow.
        pytest.param(
            "async",
            "fork",
            marks=pytest.mark.skipif(
                "fork" not in multiprocessing.get_all_start_methods(), reason="no fork here"
            ),
        ),
        pytest.param("async", "spawn", marks=pytest.mark.slow),
    ],
)
def test_make_vec_unmasked_random_actions(mode: str, context: str | None) -> None:
    """A few hundred unmasked random steps: masked choices end routes as wrong predictions,
    the others run their ``max_depth`` decisions, and every info is stacked whole."""
    # Under "spawn" the workers rebuild the env from its registered entry point alone.
    vector_kwargs = {"context": context} if context else {}
    envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode=mode,
                        vector_kwargs=vector_kwargs)  # fmt: skip
    try:
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        book = random_run(envs, steps=300 if mode == "sync" else 150)
    finally:
        envs.close()
    assert book.routes > 100
    # Unmasked: PASS is masked at depths 0 and 2, so about 1 - (6/7)**2 = 27% of routes end on
    # an invalid action; the others are judged.
    assert 0.1 < book.invalid / book.routes < 0.5
    assert 0 < book.correct < book.routes - book.invalid


def test_sync_same_step_autoreset_keeps_final_info() -> None:
    """SAME_STEP autoreset (what SB3 and TorchRL expect): the finished route's info goes to
    ``infos["final_info"]``, stacked like the others."""
    envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})  # fmt: skip
    book = random_run(envs, steps=150)
    assert book.routes > 50 and book.invalid > 0


def test_masked_sampling_from_the_observation() -> None:
    """``flatten_observation`` + ``mask_in_observation`` (PettingZoo-classic style): a sampler
    that draws from ``obs["action_mask"]`` never takes a masked action, and after a route's
    end (NEXT_STEP: the next action is ignored) the all-ones mask is still drawable."""
    envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync",
                        flatten_observation=True, mask_in_observation=True)  # fmt: skip
    space = envs.single_observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space) == {"observation", "action_mask"}
    assert space["observation"].shape == (FLAT_DIM,)
    assert space["action_mask"] == gym.spaces.Box(0, 1, (NUM_ACTIONS,), np.int8)
    book = random_run(envs, steps=150, masked=True)
    assert book.routes > 100 and book.invalid == 0


def test_sync_sub_envs_share_a_network_only_when_given_one() -> None:
    """``gym.make_vec`` calls ``gym.make`` once per sub-env: each builds its own network and
    trains its modules on its own routes, unless ``network=`` hands them one (in process:
    "sync"; "async" workers would each get a pickled copy)."""
    own = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync")
    networks = [env.unwrapped.network for env in own.envs]
    assert networks[0] is not networks[1]
    shared = networks[0]
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", network=shared)
    assert all(env.unwrapped.network is shared for env in envs.envs)


def test_routing_vector_env_stacks_infos_like_sync_vector_env() -> None:
    """Our batched vector env declares SAME_STEP autoreset as Gymnasium's own do (attribute
    and metadata) and its infos have the keys and dtypes SyncVectorEnv's have."""
    ours = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="vector_entry_point")
    assert ours.autoreset_mode == AutoresetMode.SAME_STEP
    assert ours.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    theirs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync",
                          vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})  # fmt: skip
    assert theirs.autoreset_mode == AutoresetMode.SAME_STEP
    book = random_run(ours, steps=150)
    assert book.routes > 50 and book.invalid > 0
    _, info_ours = ours.reset(seed=1)
    _, info_theirs = theirs.reset(seed=1)
    assert {k: v.dtype for k, v in info_ours.items()} == {
        k: v.dtype for k, v in info_theirs.items()
    }
