"""Tianshou over RoutingEnv: its ``DummyVectorEnv`` of Gymnasium envs, its ``Collector``
(which stacks every step's info into the replay buffer: the info contract makes that a set of
well-typed arrays), and its PPO learning to route SyntheticMTL.

Tianshou's ``Net`` takes a flat vector, so the envs use ``flatten_observation=True``; the
sub-envs share one network (``network=``), so the PPO router trains one set of modules, and
it is evaluated on the test split through that network. Tianshou PPO takes no action mask:
a masked action ends the route as a wrong prediction (-1), which it learns to avoid.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

tianshou = pytest.importorskip("tianshou")

import torch  # noqa: E402
from tianshou.algorithm import PPO  # noqa: E402
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy  # noqa: E402
from tianshou.algorithm.optim import AdamOptimizerFactory  # noqa: E402
from tianshou.data import Collector, CollectStats, VectorReplayBuffer  # noqa: E402
from tianshou.env import DummyVectorEnv  # noqa: E402
from tianshou.trainer import OnPolicyTrainerParams  # noqa: E402
from tianshou.utils.net.common import Net  # noqa: E402
from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic  # noqa: E402
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode  # noqa: E402

import routing_env  # noqa: E402  (registers the ids)

from ._contract import ENV_ID, FLAT_DIM, MAX_DEPTH, NUM_ACTIONS, check_info  # noqa: E402


def make_train_envs(
    num_envs: int, seed: int = 0, **kwargs
) -> tuple[DummyVectorEnv, routing_env.RoutedNetwork]:
    """``num_envs`` flat-observation envs routing through the first one's network, and that
    network."""
    first = gym.make(ENV_ID, flatten_observation=True, **kwargs)
    network = first.unwrapped.network
    envs = DummyVectorEnv(
        [lambda: first]
        + [lambda: gym.make(ENV_ID, flatten_observation=True, network=network)] * (num_envs - 1)
    )
    envs.seed(seed)
    return envs, network


def make_ppo(seed: int = 0, lr: float = 3e-3) -> PPO:
    """Tianshou's discrete PPO (its ``test_ppo_discrete`` layout), undiscounted like our
    routes, with separate 64x64 actor and critic bodies."""
    torch.manual_seed(seed)
    space = gym.spaces.Discrete(NUM_ACTIONS)
    actor = DiscreteActor(
        preprocess_net=Net(state_shape=FLAT_DIM, hidden_sizes=[64, 64]), action_shape=NUM_ACTIONS
    )
    critic = DiscreteCritic(preprocess_net=Net(state_shape=FLAT_DIM, hidden_sizes=[64, 64]))
    policy = DiscreteActorPolicy(
        actor=actor,
        dist_fn=torch.distributions.Categorical,
        action_space=space,
        deterministic_eval=True,
    )
    return PPO(
        policy=policy,
        critic=critic,
        optim=AdamOptimizerFactory(lr=lr),
        gamma=1.0,
        ent_coef=0.01,
        max_grad_norm=0.5,
    )


def test_dummy_vector_env_steps_and_resets() -> None:
    """Tianshou's vector env stacks observations and infos; the caller resets the envs whose
    route ended (``reset(env_id)``), as Tianshou documents."""
    envs, _ = make_train_envs(4)
    obs, infos = envs.reset()
    assert obs.shape == (4, FLAT_DIM) and obs.dtype == np.float32
    assert infos.shape == (4,)
    rng = np.random.default_rng(0)
    ends = invalid = 0
    for _ in range(60):
        obs, rewards, terminated, truncated, infos = envs.step(rng.integers(NUM_ACTIONS, size=4))
        assert obs.shape == (4, FLAT_DIM) and not truncated.any()
        for info, done, reward in zip(infos, terminated, rewards, strict=True):
            check_info(info)
            assert info["route_done"] == done
            if done:
                assert reward == info["final_reward"] == (1.0 if info["correct"] else -1.0)
                ends += 1
                invalid += info["invalid_action"]
        done_ids = np.flatnonzero(terminated)
        if done_ids.size:
            obs_reset, _ = envs.reset(done_ids)
            assert (obs_reset[:, -(MAX_DEPTH + 1)] == 1).all()  # depth 0
    envs.close()
    assert ends > 40 and 0 < invalid < ends


def test_collector_and_one_ppo_update() -> None:
    """Smoke test: the Collector fills the replay buffer with typed infos, and one PPO update
    (inside a training step, as Tianshou's trainer runs it) changes the policy."""
    envs, _ = make_train_envs(4)
    algorithm = make_ppo()
    # The first VectorReplayBuffer of a process compiles Tianshou's numba kernels (seconds).
    collector = Collector[CollectStats](algorithm, envs, VectorReplayBuffer(240, 4))
    with policy_within_training_step(algorithm.policy):
        stats = collector.collect(n_step=240, reset_before_collect=True)
    assert stats.n_collected_steps == 240 and stats.n_collected_episodes > 50
    batch, _ = collector.buffer.sample(0)  # everything collected
    assert len(batch) == 240
    info = batch.info
    assert info.route_done.dtype == bool and info.correct.dtype == bool
    assert info.path.shape == (240, MAX_DEPTH) and info.path.dtype == np.int64
    assert info.action_mask.shape == (240, NUM_ACTIONS) and info.action_mask.dtype == np.int8
    np.testing.assert_array_equal(info.route_done, batch.terminated)
    ended = batch.terminated
    np.testing.assert_array_equal(batch.rew[ended], np.where(info.correct[ended], 1.0, -1.0))
    assert (batch.rew[~ended] == 0).all()
    # A judged route ran its max_depth decisions; an invalid one ended on PASS (the only
    # action SyntheticMTL masks), recorded last in its path.
    valid = ended & ~info.invalid_action
    assert (info.path[valid] >= 0).all()
    for path in info.path[ended & info.invalid_action]:
        assert path[path >= 0][-1] == NUM_ACTIONS - 1

    before = [p.detach().clone() for p in algorithm.policy.parameters()]
    with policy_within_training_step(algorithm.policy), torch_train_mode(algorithm):
        algorithm.update(buffer=collector.buffer, batch_size=64, repeat=1)
    after = list(algorithm.policy.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    envs.close()


def greedy_accuracy(algorithm: PPO, network: routing_env.RoutedNetwork) -> float:
    """Greedy accuracy of the policy on the whole test split, through ``network``."""
    test_env = gym.make(ENV_ID, split="test", network=network, flatten_observation=True)
    collector = Collector[CollectStats](algorithm, DummyVectorEnv([lambda: test_env]))
    stats = collector.collect(n_episode=test_env.unwrapped.num_samples, reset_before_collect=True)
    assert stats.n_collected_episodes == test_env.unwrapped.num_samples
    # The return of a route is its final reward: +1 correct, -1 wrong.
    return float(np.mean(stats.returns == 1.0))


@pytest.mark.slow
def test_ppo_learns_to_route_synthetic_mtl() -> None:
    """Tianshou PPO reaches >= 85% test accuracy on SyntheticMTL (majority rate 50%)."""
    steps = 100_000
    envs, network = make_train_envs(8, module_lr=0.3)
    algorithm = make_ppo(lr=3e-3)
    collector = Collector[CollectStats](algorithm, envs, VectorReplayBuffer(1024, 8))
    start = time.perf_counter()
    algorithm.run_training(
        OnPolicyTrainerParams(
            training_collector=collector,
            test_collector=None,
            max_epochs=1,
            epoch_num_steps=steps,
            collection_step_num_env_steps=1024,
            update_step_num_repetitions=4,
            batch_size=256,
            test_in_training=False,
            show_progress=False,
        )
    )
    seconds = time.perf_counter() - start
    accuracy = greedy_accuracy(algorithm, network)
    print(f"Tianshou PPO: {steps} env steps, {seconds:.0f} s, test accuracy {accuracy:.3f}")
    assert accuracy >= 0.85
