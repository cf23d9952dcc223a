"""The routing MDP core shared by the three environments: the info contract, the observation
options, the sample stream, and the game's fixed agent set, state and squashing."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from routing_env import RoutingEnv, RoutingVectorEnv, routing_game_v0
from routing_env.mdp import INFO_KEYS, SampleStream

SMALL_SYNTHETIC = {"samples_per_task": 60, "test_samples_per_task": 10}


def signature(info: dict) -> dict:
    """Each key's type, and dtype and shape for arrays: what Gymnasium's vector envs stack."""
    out = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray):
            out[key] = ("array", value.dtype.str, value.shape)
        else:
            out[key] = type(value).__name__
    return out


def no_none_or_nan(info: dict) -> bool:
    for value in info.values():
        if value is None:
            return False
        array = np.asarray(value)
        if array.dtype.kind == "f" and np.isnan(array).any():
            return False
    return True


def params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


# ---------------------------------------------------------------------- info contract


@pytest.mark.parametrize(
    ("dataset", "kwargs"),
    [
        ("mnist1d-mtl", {"dataset_options": {"num_samples": 600}}),  # PASS masked at depth 0
        ("digits-mtl", {"routing": "recurrent"}),
        ("regression-two-mode", {"dataset_options": {"samples": 100, "test_samples": 20}}),
    ],
)
def test_single_env_infos_share_keys_and_types_over_random_unmasked_actions(dataset, kwargs):
    env = RoutingEnv(dataset, **kwargs)
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    reference = signature(info)
    assert tuple(info) == INFO_KEYS and no_none_or_nan(info)
    seen_end = seen_invalid = 0
    for _ in range(300):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        assert signature(info) == reference and no_none_or_nan(info)
        if terminated:
            seen_end += 1
            seen_invalid += info["invalid_action"]
            assert info["route_done"] and info["action_mask"].all()
            _, info = env.reset()
            assert signature(info) == reference and not info["route_done"]
        else:
            assert not info["route_done"] and info["loss"] == -1.0
    assert seen_end > 20
    if dataset == "mnist1d-mtl":
        assert seen_invalid > 0


def test_invalid_action_route_has_one_encoding_in_all_three_envs():
    """PASS into the logits layer of layered digits is masked: the same end info everywhere."""
    single = RoutingEnv("digits-mtl")
    single.reset(seed=0, options={"sample_index": 7})
    for action in (0, 0):
        single.step(action)
    *_, single_info = single.step(10)

    vector = RoutingVectorEnv(2, "digits-mtl")
    vector.reset(seed=0, options={"sample_index": np.array([7, 8])})
    vector.step(np.array([0, 0]))
    vector.step(np.array([0, 0]))
    *_, infos = vector.step(np.array([10, 1]))
    vector_info = {key: infos["final_info"][key][0] for key in INFO_KEYS}

    game = routing_game_v0.parallel_env()
    sample = int(game.task_samples["router_0"][0])
    game.reset(seed=0, options={"sample_indices": {"router_0": sample}})
    game.step(dict.fromkeys(game.agents, 0))
    game.step(dict.fromkeys(game.agents, 0))
    *_, game_infos = game.step({**dict.fromkeys(game.agents, 1), "router_0": 10})
    game_info = game_infos["router_0"]

    for info in (single_info, vector_info, game_info):
        assert bool(info["invalid_action"]) and bool(info["route_done"])
        assert info["prediction"] == -1 and info["loss"] == -1.0
        assert not info["correct"] and info["final_reward"] == -1.0
        assert info["path"].tolist() == [0, 0, 10]
    assert single_info["label"] == int(single.dataset.train.y[7])
    assert game_info["label"] == int(game.dataset.train.y[sample])


def test_vector_env_infos_hold_every_key_at_reset_and_every_step():
    envs = RoutingVectorEnv(6, "mnist1d-mtl", dataset_options={"num_samples": 600})
    assert envs.autoreset_mode == AutoresetMode.SAME_STEP == envs.metadata["autoreset_mode"]
    envs.action_space.seed(1)
    _, infos = envs.reset(seed=0)
    expected = set(INFO_KEYS) | {f"_{key}" for key in INFO_KEYS}
    assert set(infos) == expected
    for _ in range(60):
        _, _, terminated, _, infos = envs.step(envs.action_space.sample())
        assert expected <= set(infos)
        assert not infos["route_done"].any() and (infos["loss"] == -1.0).all()
        if terminated.any():
            final = infos["final_info"]
            assert set(final) == expected
            np.testing.assert_array_equal(final["route_done"], terminated)
            assert np.all(final["loss"][terminated & ~final["invalid_action"]] > 0)
            assert np.all(final["path"][~terminated] == -1)


# ---------------------------------------------------------------------- observation options


def test_flat_observation_is_activation_and_one_hots_with_bounds():
    env = RoutingEnv("digits-mtl", flatten_observation=True)
    dict_env = RoutingEnv("digits-mtl", network=env.network)
    space = env.observation_space
    assert isinstance(space, spaces.Box) and space.shape == (64 + 10 + 4,)
    assert space.dtype == np.float32
    assert np.isinf(space.low[:64]).all() and (space.low[64:] == 0).all()
    assert np.isinf(space.high[:64]).all() and (space.high[64:] == 1).all()
    flat, _ = env.reset(seed=0, options={"sample_index": 3})
    plain, _ = dict_env.reset(seed=0, options={"sample_index": 3})
    np.testing.assert_array_equal(flat[:64], plain["activation"])
    assert flat[64:74].argmax() == plain["task"] and flat[64:74].sum() == 1
    assert flat[74:].tolist() == [1, 0, 0, 0]
    for action in (1, 2, 3):
        flat, *_ = env.step(action)
        assert space.contains(flat)
    assert flat[74:].tolist() == [0, 0, 0, 1]  # the terminal observation is at depth 3


@pytest.mark.parametrize("flatten", [False, True])
def test_mask_in_observation_in_all_three_envs(flatten):
    kwargs = {"flatten_observation": flatten, "mask_in_observation": True}
    env = RoutingEnv("digits-mtl", **kwargs)
    mask_space = spaces.Box(0, 1, (11,), np.int8)
    assert isinstance(env.observation_space, spaces.Dict)
    assert env.observation_space["action_mask"] == mask_space
    keys = {"observation", "action_mask"} if flatten else {"activation", "task", "depth"}
    assert set(env.observation_space) == keys | {"action_mask"}
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs["action_mask"], info["action_mask"])
    env.step(0)
    obs, *_ = env.step(0)
    assert obs["action_mask"].tolist() == [1] * 10 + [0]
    obs, _, terminated, _, _ = env.step(0)
    assert terminated and obs["action_mask"].tolist() == [1] * 11
    assert env.observation_space.contains(obs)

    envs = RoutingVectorEnv(3, "digits-mtl", **kwargs)
    obs, infos = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    envs.step(np.array([0, 0, 0]))
    obs, _, _, _, infos = envs.step(np.array([0, 0, 0]))
    np.testing.assert_array_equal(obs["action_mask"], infos["action_mask"])
    obs, _, terminated, _, infos = envs.step(np.array([0, 0, 0]))
    assert terminated.all() and infos["final_obs"][0]["action_mask"].tolist() == [1] * 11
    assert envs.single_observation_space.contains(infos["final_obs"][0])

    game = routing_game_v0.parallel_env(**kwargs)
    obs, infos = game.reset(seed=0)
    assert game.observation_space("router_0").contains(obs["router_0"])
    np.testing.assert_array_equal(obs["router_3"]["action_mask"], infos["router_3"]["action_mask"])


def test_vector_env_flat_observations_match_the_single_env():
    single = RoutingEnv("digits-mtl", flatten_observation=True, train_modules=False)
    envs = RoutingVectorEnv(
        2, "digits-mtl", flatten_observation=True, network=single.network, train_modules=False
    )
    obs, _ = envs.reset(options={"sample_index": np.array([4, 9])})
    assert obs.shape == (2, 78) and envs.observation_space.contains(obs)
    first, _ = single.reset(options={"sample_index": 9})
    np.testing.assert_allclose(obs[1], first, atol=1e-6)


# ---------------------------------------------------------------------- samples


def test_sample_stream_draws_a_permutation_per_pass_across_calls():
    stream = SampleStream(np.arange(10), shuffle=True)
    rng = np.random.default_rng(0)
    drawn = np.concatenate([stream.take(3, rng) for _ in range(7)])
    assert sorted(drawn[:10].tolist()) == list(range(10))
    assert sorted(drawn[10:20].tolist()) == list(range(10))
    assert drawn[:10].tolist() != list(range(10))
    ordered = SampleStream(np.array([5, 7, 9]), shuffle=False)
    assert ordered.take(4, rng).tolist() == [5, 7, 9, 5]
    ordered.restart()
    assert ordered.take(1, rng).tolist() == [5]


# ---------------------------------------------------------------------- the game


def test_game_state_is_every_agents_flat_observation():
    game = routing_game_v0.parallel_env(dataset="synthetic-mtl", dataset_options=SMALL_SYNTHETIC)
    flat = routing_game_v0.parallel_env(
        dataset="synthetic-mtl", dataset_options=SMALL_SYNTHETIC, flatten_observation=True
    )
    with pytest.raises(RuntimeError, match="reset"):
        game.state()
    seed_options = {"sample_indices": {"router_1": int(game.task_samples["router_1"][2])}}
    game.reset(seed=4, options=seed_options)
    obs, _ = flat.reset(seed=4, options=seed_options)
    state = game.state()
    assert game.state_space.contains(state)
    width = flat.observation_space("router_0").shape[0]
    assert state.shape == (width * len(game.possible_agents),)
    np.testing.assert_allclose(state[width : 2 * width], obs["router_1"], atol=1e-6)


def test_game_rejects_a_bad_leave_early_and_names_missing_actions():
    with pytest.raises(ValueError, match="leave_early"):
        routing_game_v0.parallel_env(leave_early="yes")
    game = routing_game_v0.parallel_env()
    game.reset(seed=0)
    with pytest.raises(ValueError, match="no action for router_9"):
        game.step({agent: 0 for agent in game.possible_agents[:9]})


def test_game_squashing_scales_module_updates_of_exploratory_routes():
    """kappa large: a round whose routes are all marked exploratory trains nothing."""
    kwargs = {"module_batch_size": 10, "squash_kappa": 50.0}
    game = routing_game_v0.parallel_env(**kwargs)
    game.reset(seed=0)
    before = params(game.network)
    for _ in range(3):
        game.mark_exploratory(dict.fromkeys(game.agents, True))
        game.step(dict.fromkeys(game.agents, 1))
    assert game.network.num_updates == 1
    assert torch.allclose(before, params(game.network))
    plain = routing_game_v0.parallel_env(module_batch_size=10)
    plain.reset(seed=0)
    for _ in range(3):
        plain.step(dict.fromkeys(plain.agents, 1))
    assert not torch.allclose(params(plain.network), before)
    with pytest.raises(ValueError, match="not an agent"):
        game.mark_exploratory({"router_99": True})
