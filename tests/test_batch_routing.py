"""Routing chosen samples once, all at once (routing_env.batch_routing)."""

import gymnasium as gym
import numpy as np
import pytest

from routing_env import RoutingEnv, routing_game_v0
from routing_env.batch_routing import batch_routing_obstacle, observation_rows, route_samples


def route_one_by_one(env, indices, decide):
    """The reference: each sample alone through the single env, with the same decisions."""
    infos, returns = [], []
    for index in indices:
        obs, info = env.reset(options={"sample_index": int(index)})
        total, depth, done = 0.0, 0, False
        while not done:
            task = np.array([obs["task"]])
            batch = {key: np.asarray(value)[None] for key, value in obs.items()}
            action = decide(batch, np.asarray(info["action_mask"])[None], task, depth)[0]
            obs, reward, done, _, info = env.step(int(action))
            total += reward
            depth += 1
        infos.append(info)
        returns.append(total)
    return infos, returns


def by_task_and_activation(obs, masks, tasks, depth):
    """Decisions that depend on the state: its task, depth and activation; some masked."""
    sign = (obs["activation"][:, :4].sum(axis=1) > 0).astype(np.int64)
    return (tasks + 3 * depth + sign * 5) % masks.shape[1]


@pytest.mark.parametrize(
    "options",
    [
        {"hidden_dim": 32},  # PASS masked at depths 0 and 2: some routes end at once
        {"routing": "recurrent", "collaboration_reward": 0.7},
        {"routing": "recurrent", "reward": "neg_loss", "mask_in_observation": True},
    ],
)
def test_routes_equal_one_by_one_routes_in_the_given_order(options):
    env = RoutingEnv("digits-mtl", split="test", **options)
    env.network.selection_history.record_many(0, np.array([1, 1, 2, 3]))
    indices = np.array([17, 3, 3, 2000, 512, 0, 3589, 1024])
    routed = route_samples(env, indices, by_task_and_activation)
    infos, returns = route_one_by_one(env, indices, by_task_and_activation)
    np.testing.assert_array_equal(routed.final_info["sample_index"], indices)
    np.testing.assert_array_equal(routed.tasks, env.dataset.test.task[indices])
    for key in ("path", "correct", "invalid_action", "prediction", "label", "route_done"):
        np.testing.assert_array_equal(
            routed.final_info[key], [info[key] for info in infos], err_msg=key
        )
    np.testing.assert_allclose(routed.final_info["loss"], [i["loss"] for i in infos], rtol=1e-5)
    np.testing.assert_allclose(routed.returns, returns, rtol=1e-6)
    if options.get("reward") != "neg_loss":
        np.testing.assert_array_equal(routed.returns, returns)  # the same sums, to the bit
    lengths = (routed.final_info["path"] >= 0).sum(axis=1)
    assert len(set(lengths.tolist())) > 1 or "routing" not in options


def test_decide_sees_only_the_routes_still_running():
    env = RoutingEnv("digits-mtl", split="test", routing="recurrent")
    stop = env.network.extra_action
    calls = []

    def decide(obs, masks, tasks, depth):
        calls.append((len(tasks), depth, obs["depth"].tolist()))
        return np.where(tasks % 3 == depth, stop, 1)  # task t stops at depth t % 3

    indices = np.linspace(0, env.num_samples - 1, 30).astype(np.int64)
    routed = route_samples(env, indices, decide)
    stops = routed.tasks % 3
    expected = [(int((stops >= depth).sum()), depth) for depth in range(3)]
    assert expected[2][0] < expected[1][0] < 30
    assert [(count, depth) for count, depth, _ in calls] == expected
    assert all(seen == [depth] * count for count, depth, seen in calls)
    lengths = (routed.final_info["path"] >= 0).sum(axis=1)
    np.testing.assert_array_equal(lengths, stops + 1)


def test_flat_observations_are_sliced_as_arrays():
    rows = np.array([2, 0])
    flat = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(observation_rows(flat, rows), flat[rows])
    sliced = observation_rows({"a": flat, "b": np.arange(4)}, rows)
    np.testing.assert_array_equal(sliced["b"], [2, 0])
    env = RoutingEnv("digits-mtl", split="test", flatten_observation=True)
    routed = route_samples(env, np.arange(5), lambda obs, masks, tasks, depth: tasks % 3)
    assert routed.final_info["path"].tolist() == [[t % 3] * 3 for t in routed.tasks.tolist()]


def test_obstacles_and_bad_input():
    env = RoutingEnv("digits-mtl", split="test")
    assert batch_routing_obstacle(env) is None
    assert batch_routing_obstacle(gym.make("routing_env/DigitsMTL-v0", split="test")) is None
    game = routing_game_v0.parallel_env(split="test", network=env.network)
    assert batch_routing_obstacle(game) is None
    assert "trains its modules" in batch_routing_obstacle(RoutingEnv("digits-mtl"))
    wrapped = gym.wrappers.TransformReward(env, lambda r: 2 * r)
    assert "TransformReward" in batch_routing_obstacle(wrapped)

    class Custom(RoutingEnv):
        pass

    assert "Custom" in batch_routing_obstacle(Custom("digits-mtl", split="test"))
    with pytest.raises(ValueError, match="at least one"):
        route_samples(env, np.array([], dtype=np.int64), by_task_and_activation)
    with pytest.raises(ValueError, match="outside the test split"):
        route_samples(env, np.array([0, 3590]), by_task_and_activation)
