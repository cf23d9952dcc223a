"""Checkpoint files: atomic writes, plain contents, and one-line refusals of bad files."""

import os

import numpy as np
import pytest
import torch

from routing_env.checkpoint import (
    CheckpointError,
    dataset_fingerprint,
    from_plain,
    generator_state,
    read_checkpoint,
    restore_generator,
    to_plain,
    write_checkpoint,
)
from routing_env.datasets import load_suite

SMALL = {"samples_per_task": 40, "test_samples_per_task": 10}


class _Exploit:
    """A pickle that would create a marker file when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_of_arrays_generators_and_big_numbers(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(5)
    payload = {"array": np.arange(6).reshape(2, 3), "rng": generator_state(rng), "n": 3}
    path = write_checkpoint(tmp_path / "c.pt", to_plain(payload))
    loaded = from_plain(read_checkpoint(path))
    np.testing.assert_array_equal(loaded["array"], payload["array"])
    other = np.random.default_rng(0)
    restore_generator(other, loaded["rng"])
    assert other.random() == rng.random()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "c.pt"
    write_checkpoint(path, {"n": 1})
    with pytest.raises(Exception, match="pickle"):
        write_checkpoint(path, {"n": 2, "unpicklable": lambda: 0})
    assert read_checkpoint(path)["n"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


def test_bad_checkpoints_are_refused_in_one_line_naming_the_file(tmp_path):
    good = write_checkpoint(tmp_path / "good.pt", {"n": 1})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(good, "rb").read()[:40])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    future = tmp_path / "future.pt"
    torch.save({"format": "routing-env-checkpoint", "version": 99}, future)
    cases = {
        truncated: "truncated or corrupt",
        garbage: "truncated or corrupt",
        foreign: "not a routing-env checkpoint",
        future: "format version 99",
        tmp_path / "missing.pt": "no such file",
    }
    for path, problem in cases.items():
        with pytest.raises(CheckpointError) as refused:
            read_checkpoint(path)
        message = str(refused.value)
        assert str(path) in message and problem in message and "\n" not in message


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "routing-env-checkpoint", "version": 1, "x": _Exploit(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(evil)
    assert not marker.exists()


def test_a_checkpoint_of_other_data_is_refused():
    first = load_suite("synthetic-mtl", **SMALL)
    second = load_suite("synthetic-mtl", seed=1, **SMALL)
    assert dataset_fingerprint(first) == dataset_fingerprint(load_suite("synthetic-mtl", **SMALL))
    assert dataset_fingerprint(first) != dataset_fingerprint(second)


def test_read_checkpoint_checks_the_dataset(tmp_path):
    first = load_suite("synthetic-mtl", **SMALL)
    second = load_suite("synthetic-mtl", seed=1, **SMALL)
    path = write_checkpoint(tmp_path / "c.pt", {"dataset": dataset_fingerprint(first)})
    read_checkpoint(path, dataset=first)
    with pytest.raises(CheckpointError, match="content hash differs"):
        read_checkpoint(path, dataset=second)


def _continue(env, actions):
    return [env.step(a)[0]["activation"].tolist() for a in actions]


def test_env_states_continue_the_sample_stream_and_the_route_in_flight(tmp_path):
    from routing_env import RoutingEnv, RoutingVectorEnv

    kwargs = {"dataset_options": SMALL, "train_modules": False}
    env = RoutingEnv("synthetic-mtl", **kwargs)
    env.reset(seed=3)
    env.step(1)
    saved = write_checkpoint(tmp_path / "env.pt", to_plain({"env": env.checkpoint_state()}))
    expected = _continue(env, [2, 3]) + [env.reset()[1]["sample_index"]]
    fresh = RoutingEnv("synthetic-mtl", network=env.network, **kwargs)
    fresh.restore_state(from_plain(read_checkpoint(saved))["env"])
    assert _continue(fresh, [2, 3]) + [fresh.reset()[1]["sample_index"]] == expected

    envs = RoutingVectorEnv(3, "synthetic-mtl", **kwargs)
    envs.reset(seed=1)
    envs.step(np.array([0, 1, 2]))
    state = from_plain(to_plain(envs.checkpoint_state()))
    after = [envs.step(np.array([3, 3, 3]))[0]["activation"] for _ in range(4)]
    again = RoutingVectorEnv(3, "synthetic-mtl", network=envs.network, **kwargs)
    again.restore_state(state)
    np.testing.assert_array_equal(again.observe()[1]["path"][:, 0], [0, 1, 2])
    for expected_obs in after:
        np.testing.assert_array_equal(
            again.step(np.array([3, 3, 3]))[0]["activation"], expected_obs
        )


def _route_randomly(env, rng, routes):
    for _ in range(routes):
        _, info = env.reset()
        done = False
        while not done:
            allowed = np.flatnonzero(info["action_mask"])
            _, _, done, _, info = env.step(int(rng.choice(allowed)))


def test_network_and_env_state_resume_training_bit_for_bit(tmp_path):
    from routing_env import RoutingEnv
    from routing_env.checkpoint import network_state, restore_network

    kwargs = {"dataset_options": SMALL, "module_batch_size": 16, "collaboration_reward": 0.3}
    env = RoutingEnv("synthetic-mtl", **kwargs)
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    _route_randomly(env, rng, 37)  # 2 updates, 5 routes queued
    assert env.network.pending_routes == 5
    saved = write_checkpoint(
        tmp_path / "run.pt",
        {"network": network_state(env.network), "env": to_plain(env.checkpoint_state())},
    )
    rng_state = rng.bit_generator.state
    _route_randomly(env, rng, 40)
    expected = [p.detach().clone() for p in env.network.parameters()]

    fresh = RoutingEnv("synthetic-mtl", **kwargs)
    content = read_checkpoint(saved)
    restore_network(fresh.network, content["network"])
    fresh.restore_state(from_plain(content["env"]))
    assert fresh.network.pending_routes == 5 and fresh.network.num_updates == 2
    rng = np.random.default_rng(0)
    rng.bit_generator.state = rng_state
    _route_randomly(fresh, rng, 40)
    assert fresh.network.num_updates == env.network.num_updates
    for mine, theirs in zip(fresh.network.parameters(), expected, strict=True):
        assert torch.equal(mine, theirs)
