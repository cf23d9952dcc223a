"""Ray RLlib on our envs through RLlib's own documented wrapping (DESIGN 3.6), new API stack.

Single agent: the env registered with ``ray.tune.registry.register_env`` (and, separately, the
Gymnasium id), vectorized by RLlib itself (``num_envs_per_env_runner=2``). Multi-agent: the game
through ``ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv``, one policy per router
and one shared policy. Every algorithm is small: CPU, sampling in the local env runner, a batch
of a few hundred env steps, so the file runs in two minutes or so (``make test-rllib``).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
from ray.rllib.utils.pre_checks.env import check_multiagent_environments
from ray.tune.registry import register_env

import routing_env
from routing_env import mdp, routing_game_v0

pytestmark = pytest.mark.rllib

ROOT = Path(__file__).resolve().parents[2]
DATASET = "synthetic-mtl"
# The sizes the flat observation is built from (DESIGN 3.1), read from the Dict observation.
_SPACE = routing_env.RoutingEnv(DATASET).observation_space
NUM_TASKS = _SPACE["task"].n
MAX_DEPTH = _SPACE["depth"].n - 1
FLAT_DIM = _SPACE["activation"].shape[0] + NUM_TASKS + MAX_DEPTH + 1
ROUTERS = [f"router_{task}" for task in range(NUM_TASKS)]
INFO_KEYS = set(mdp.INFO_KEYS)

register_env("routing-env-test", lambda config: routing_env.RoutingEnv(**config))
register_env(
    "routing-game-test",
    lambda config: ParallelPettingZooEnv(routing_game_v0.parallel_env(**config)),
)


def small_ppo(env: str, env_config: dict, **env_runners) -> PPOConfig:
    """PPO on the new API stack, sized for a test: a 32-unit MLP, 256 env steps per
    iteration, sampled in the local env runner unless ``env_runners`` says otherwise."""
    return (
        PPOConfig()
        .environment(env, env_config=env_config)
        .env_runners(**{"num_env_runners": 0, "num_envs_per_env_runner": 2, **env_runners})
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=2)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32]))
        .debugging(seed=0)
    )


def check_info(info: dict) -> None:
    """The info contract (DESIGN 3.1) as RLlib's episodes receive it."""
    assert set(info) == INFO_KEYS, f"info keys {sorted(info)} != {sorted(INFO_KEYS)}"
    for key, value in info.items():
        assert value is not None, f"info[{key!r}] is None"
        assert not np.isnan(np.asarray(value, dtype=float)).any(), f"info[{key!r}] is NaN"
    assert np.asarray(info["action_mask"]).dtype == np.int8
    assert np.asarray(info["path"]).shape == (MAX_DEPTH,)


def train(config: PPOConfig, iterations: int) -> tuple[object, list[dict]]:
    algo = config.build_algo()
    results = [algo.train() for _ in range(iterations)]
    return algo, results


# --- single agent -------------------------------------------------------------------------------


def test_sync_vector_env_as_rllib_builds_it() -> None:
    """RLlib's SingleAgentEnvRunner vectorizes with ``gym.make_vec(..., "sync")`` and wraps it
    in ``DictInfoToList``; Gymnasium stacks infos into arrays, so every sub-env must return the
    same keys and types at reset and at every step (a ``None`` breaks the stacking, and RLlib
    reports that only as a bare ``RuntimeError``)."""
    env = DictInfoToList(
        gym.make_vec(
            "routing_env/SyntheticMTL-v0",
            num_envs=2,
            vectorization_mode="sync",
            flatten_observation=True,
        )
    )
    space = env.single_observation_space
    assert isinstance(space, gym.spaces.Box)
    assert space.shape == (FLAT_DIM,) and space.dtype == np.float32
    observations, infos = env.reset(seed=0)
    assert observations.shape == (2, FLAT_DIM) and observations.dtype == np.float32
    for info in infos:
        check_info(info)
    ends = 0
    rng = np.random.default_rng(0)
    for _ in range(40):
        actions = rng.integers(0, env.single_action_space.n, size=2)
        observations, rewards, terminated, truncated, infos = env.step(actions)
        assert observations.shape == (2, FLAT_DIM)
        assert env.single_observation_space.contains(observations[0])
        for info in infos:
            check_info(info)
        ends += int(terminated.sum())
    assert ends > 0


def test_single_agent_ppo_on_registered_env_two_envs_per_runner(ray_cluster: None) -> None:
    config = small_ppo("routing-env-test", {"dataset": DATASET, "flatten_observation": True})
    algo = config.build_algo()
    # The env trains its modules on the routes RLlib's sampling finishes.
    network = algo.env_runner.env.unwrapped.envs[0].unwrapped.network
    before = [p.detach().clone() for p in network.parameters()]
    results = [algo.train() for _ in range(3)]
    try:
        assert any(not p.equal(q) for p, q in zip(before, network.parameters(), strict=True))
        assert algo.get_module().observation_space.shape == (FLAT_DIM,)
        assert algo.env_runner.num_envs == 2
        runners = [result["env_runners"] for result in results]
        steps = [runner["num_env_steps_sampled_lifetime"] for runner in runners]
        assert steps == sorted(steps) and steps[-1] >= 3 * 256
        for runner in runners:
            # Final reward +1 / -1 and no per-step reward: a route's return lies in [-1, 1].
            assert -1.0 <= runner["episode_return_mean"] <= 1.0
            assert 1.0 <= runner["episode_len_mean"] <= MAX_DEPTH
        learner = results[-1]["learners"]["default_policy"]
        assert math.isfinite(learner["total_loss"])
    finally:
        algo.stop()


def test_single_agent_ppo_on_gym_id_in_remote_env_runner(ray_cluster: None) -> None:
    """The plain Gymnasium id in a remote env runner (a fresh process): the ``module:`` prefix
    makes Gymnasium import ``routing_env``, which registers the id there."""
    config = small_ppo(
        "routing_env:routing_env/SyntheticMTL-v0",
        {"flatten_observation": True},
        num_env_runners=1,
    )
    algo, results = train(config, 1)
    try:
        runner = results[0]["env_runners"]
        assert runner["num_env_steps_sampled_lifetime"] >= 256
        assert -1.0 <= runner["episode_return_mean"] <= 1.0
    finally:
        algo.stop()


# --- multi-agent --------------------------------------------------------------------------------


def test_parallel_pettingzoo_env_wraps_the_game() -> None:
    env = ParallelPettingZooEnv(
        routing_game_v0.parallel_env(dataset=DATASET, flatten_observation=True)
    )
    agents = sorted(ROUTERS)
    assert sorted(env.possible_agents) == agents
    num_actions = routing_env.RoutingEnv(DATASET).action_space.n
    for agent in agents:
        assert env.get_observation_space(agent).shape == (FLAT_DIM,)
        assert env.get_action_space(agent) == gym.spaces.Discrete(num_actions)
    check_multiagent_environments(env)

    # A full round with unmasked random actions: every router acts at every step until the
    # round ends (fixed agent set), then all terminate together.
    rng = np.random.default_rng(0)
    for round_index in range(20):
        observations, infos = env.reset(seed=round_index)
        assert sorted(observations) == agents
        for agent in agents:
            check_info(infos[agent])
        for depth in range(1, MAX_DEPTH + 1):
            actions = {agent: int(rng.integers(0, num_actions)) for agent in observations}
            observations, rewards, terminateds, truncateds, infos = env.step(actions)
            assert sorted(observations) == agents, f"agents left the round at depth {depth}"
            for agent in agents:
                assert env.get_observation_space(agent).contains(observations[agent])
                assert np.isscalar(rewards[agent]) and -1.0 <= rewards[agent] <= 1.0
                check_info(infos[agent])
            if terminateds["__all__"]:
                break
        assert terminateds["__all__"] and all(terminateds[agent] for agent in agents)
        assert all(infos[agent]["route_done"] for agent in agents)


def test_multiagent_ppo_one_policy_per_router(ray_cluster: None) -> None:
    agents = sorted(ROUTERS)
    config = small_ppo(
        "routing-game-test", {"dataset": DATASET, "flatten_observation": True}
    ).multi_agent(
        policies=set(agents), policy_mapping_fn=lambda agent_id, episode, **kwargs: agent_id
    )
    algo, results = train(config, 2)
    try:
        runner = results[-1]["env_runners"]
        returns = runner["agent_episode_returns_mean"]
        assert sorted(returns) == agents
        assert all(-1.0 <= value <= 1.0 for value in returns.values())
        assert set(agents) <= set(results[-1]["learners"])
        for agent in agents:
            assert math.isfinite(results[-1]["learners"][agent]["total_loss"])
            assert algo.get_module(agent).observation_space.shape == (FLAT_DIM,)
    finally:
        algo.stop()


def test_multiagent_ppo_shared_policy(ray_cluster: None) -> None:
    config = small_ppo(
        "routing-game-test", {"dataset": DATASET, "flatten_observation": True}
    ).multi_agent(
        policies={"router"}, policy_mapping_fn=lambda agent_id, episode, **kwargs: "router"
    )
    algo, results = train(config, 2)
    try:
        runner = results[-1]["env_runners"]
        assert sorted(runner["agent_episode_returns_mean"]) == sorted(ROUTERS)
        assert list(runner["module_episode_returns_mean"]) == ["router"]
        assert math.isfinite(results[-1]["learners"]["router"]["total_loss"])
    finally:
        algo.stop()


# --- the example and the recipe -----------------------------------------------------------------


def test_example_runs() -> None:
    """examples/rllib_multiagent_ppo.py top to bottom, in its own process (it starts and stops
    its own Ray), on a tiny budget."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "rllib_multiagent_ppo.py"),
            "--iterations",
            "2",
            "--batch",
            "256",
            "--test-rounds",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    iteration_lines = [line for line in lines if re.match(r"\s+[12]\s+\d+\s+[\d.]+\s+[+-]", line)]
    assert len(iteration_lines) == 2, result.stdout
    assert re.search(r"mean test accuracy: [01]\.\d{3}", result.stdout), result.stdout


def test_recipe_code_runs(ray_cluster: None) -> None:
    """Every ```python block of docs/rllib_recipe.md, in order, in one namespace."""
    text = (ROOT / "docs" / "rllib_recipe.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/rllib_recipe.md", "exec"), namespace)
    # The recipe leaves its algorithms running; stop them here.
    for value in list(namespace.values()):
        if hasattr(value, "stop") and type(value).__name__ == "PPO":
            value.stop()
