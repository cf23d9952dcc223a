
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

import agents
import routing_env
from routing_env import RoutedNetwork, RoutingEnv, RoutingVectorEnv
from routing_env.mdp import INFO_KEYS
from routing_env.rewards import SelectionHistory

SMALL_SYNTHETIC = {"samples_per_task": 100, "test_samples_per_task": 20}
END_KEYS = set(INFO_KEYS)


def params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


def random_valid(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    return (rng.random(masks.shape) * masks).argmax(axis=1)


# ---------------------------------------------------------------------- making and spaces


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("routing_env/DigitsMTL-v0", {}),
        ("routing_env/SyntheticMTL-v0", {"dataset_options": SMALL_SYNTHETIC}),
        ("routing_env/MNIST1D-MTL-v0", {"dataset_options": {"num_samples": 1000}}),
        (
            "routing_env/TwoModeRegression-v0",
            {"dataset_options": {"samples": 200, "test_samples": 50}},
        ),
    ],
)
def test_make_vec_returns_the_batched_env(env_id, kwargs):
    envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(envs, RoutingVectorEnv) and envs.num_envs == 3
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, infos = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)


def test_every_registered_id_has_the_vector_entry_point():
    ids = ["routing_env/Routing-v0"] + [f"routing_env/{name}" for name in routing_env.SUITE_IDS]
    for env_id in ids:
        assert gym.spec(env_id).vector_entry_point == "routing_env.vector:RoutingVectorEnv"
    dataset = routing_env.load_suite("synthetic-mtl", **SMALL_SYNTHETIC)
    envs = gym.make_vec(
        "routing_env/Routing-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        dataset=dataset,
    )
    assert isinstance(envs, RoutingVectorEnv) and envs.dataset is dataset


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_spaces_are_batched_and_step_returns_batches(routing):
    n = 5
    envs = RoutingVectorEnv(n, "digits-mtl", routing=routing)
    single = RoutingEnv("digits-mtl", routing=routing)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, n)
    assert envs.action_space == batch_space(single.action_space, n)
    obs, infos = envs.reset(seed=0)
    assert obs["activation"].shape == (n, 64) and obs["activation"].dtype == np.float32
    assert obs["task"].shape == obs["depth"].shape == (n,)
    assert infos["action_mask"].shape == (n, 11) and infos["action_mask"].dtype == np.int8
    assert set(infos) == END_KEYS | {f"_{key}" for key in END_KEYS}
    assert all(infos[f"_{key}"].all() for key in END_KEYS) and not infos["route_done"].any()
    rng = np.random.default_rng(0)
    envs.action_space.seed(0)
    previous = None
    for step in range(40):
        # Mostly valid actions, sometimes anything in the space (ends those routes as wrong).
        if step % 5 == 4:
            actions = envs.action_space.sample()
        else:
            actions = random_valid(rng, infos["action_mask"])
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        assert envs.observation_space.contains(obs)
        assert rewards.shape == (n,) and rewards.dtype == np.float64
        assert terminated.shape == truncated.shape == (n,) and terminated.dtype == bool
        assert not truncated.any()
        assert infos["action_mask"].shape == (n, 11)
        np.testing.assert_array_equal(envs.action_masks(), infos["action_mask"].astype(bool))
        if previous is not None:  # returned arrays are never reused
            assert not np.shares_memory(previous["activation"], obs["activation"])
            assert not np.shares_memory(previous["depth"], obs["depth"])
        previous = obs


def test_same_seed_same_actions_same_trajectory():
    def rollout(seed):
        envs = RoutingVectorEnv(4, "digits-mtl", module_batch_size=4, collaboration_reward=0.3)
        rng = np.random.default_rng(5)
        obs, infos = envs.reset(seed=seed)
        trace = [obs["activation"].copy()]
        for _ in range(12):
            obs, rewards, terminated, _, infos = envs.step(random_valid(rng, infos["action_mask"]))
            trace += [obs["activation"].copy(), rewards.copy(), infos["action_mask"].copy()]
        return trace

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


# ---------------------------------------------------------------------- autoreset


def test_finished_routes_keep_final_obs_and_info_and_restart_at_once():
    envs = RoutingVectorEnv(3, "digits-mtl")
    obs, infos = envs.reset(seed=0)
    first_samples = infos["sample_index"].copy()
    actions = [np.array([0, 1, 2]), np.array([10, 3, 4]), np.array([5, 6, 7])]
    for step, action in enumerate(actions):
        obs, rewards, terminated, truncated, infos = envs.step(action)
        if step < 2:
            assert not terminated.any() and "final_info" not in infos
            assert rewards.tolist() == [0.0, 0.0, 0.0]
            np.testing.assert_array_equal(obs["depth"], [step + 1] * 3)
    assert terminated.all()
    final, final_obs = infos["final_info"], infos["final_obs"]
    assert infos["_final_info"].all() and infos["_final_obs"].all()
    assert END_KEYS <= set(final) and all(final[f"_{key}"].all() for key in END_KEYS)
    np.testing.assert_array_equal(final["sample_index"], first_samples)
    assert final["path"].tolist() == [[0, 10, 5], [1, 3, 6], [2, 4, 7]]
    assert final["route_done"].all() and not final["invalid_action"].any()
    assert final["action_mask"].tolist() == [[1] * 11] * 3  # terminal: drawable, never used
    for i in range(3):
        single_obs = final_obs[i]
        assert single_obs["depth"] == 3
        logits = single_obs["activation"][:2]
        assert np.all(single_obs["activation"][2:] == 0)  # logits, zero-padded
        assert final["prediction"][i] == int(np.argmax(logits))
        assert final["correct"][i] == (final["prediction"][i] == final["label"][i])
        assert rewards[i] == final["final_reward"][i] == (1.0 if final["correct"][i] else -1.0)
        assert final["loss"][i] == pytest.approx(
            float(np.log(np.exp(logits.astype(float)).sum()) - logits[final["label"][i]])
        )
    # The returned observation already starts the next routes.
    np.testing.assert_array_equal(obs["depth"], [0, 0, 0])
    assert infos["_sample_index"].all() and not infos["route_done"].any()
    assert (infos["path"] == -1).all() and (infos["prediction"] == -1).all()
    assert set(infos["sample_index"].tolist()).isdisjoint(first_samples.tolist())
    assert infos["action_mask"].tolist() == [[1] * 11] * 3


def test_one_env_matches_the_single_env_step_by_step():
    kwargs = {"module_batch_size": 5, "collaboration_reward": 0.5, "collaboration_window": 7}
    single = RoutingEnv("digits-mtl", **kwargs)
    envs = RoutingVectorEnv(1, "digits-mtl", **kwargs)
    rng = np.random.default_rng(1)
    obs_s, info_s = single.reset(seed=11)
    obs_v, infos_v = envs.reset(seed=11)
    routes = 0
    while routes < 40:
        action = int(random_valid(rng, info_s["action_mask"][None])[0])
        obs_s, reward_s, done_s, _, info_s = single.step(action)
        obs_v, reward_v, done_v, _, infos_v = envs.step(np.array([action]))
        assert done_v[0] == done_s
        assert reward_v[0] == pytest.approx(reward_s, abs=1e-12)
        if done_s:
            routes += 1
            final = infos_v["final_info"]
            assert set(final) - {f"_{key}" for key in END_KEYS} == set(info_s) == END_KEYS
            for key in ("correct", "prediction", "label", "sample_index", "invalid_action"):
                assert final[key][0] == info_s[key], key
            np.testing.assert_array_equal(final["path"][0], info_s["path"])
            assert final["loss"][0] == pytest.approx(info_s["loss"], rel=1e-5)
            np.testing.assert_allclose(
                infos_v["final_obs"][0]["activation"], obs_s["activation"], atol=1e-5
            )
            obs_s, info_s = single.reset()
            assert infos_v["sample_index"][0] == info_s["sample_index"]
        np.testing.assert_allclose(obs_v["activation"][0], obs_s["activation"], atol=1e-5)
        assert obs_v["depth"][0] == obs_s["depth"] and obs_v["task"][0] == obs_s["task"]
    assert envs.network.num_updates == single.network.num_updates == 8
    assert torch.equal(params(envs.network), params(single.network))


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_same_routes_give_the_single_env_parameters(routing):
    """Same seed, same routes in the same order: identical module parameters."""
    kwargs = {"routing": routing, "module_batch_size": 6, "dataset_options": SMALL_SYNTHETIC}
    envs = RoutingVectorEnv(7, "synthetic-mtl", **kwargs)
    rng = np.random.default_rng(2)
    obs, infos = envs.reset(seed=5)
    finished = []  # (sample_index, path) in the order the vector env trained on them
    for step in range(60):
        actions = random_valid(rng, infos["action_mask"])
        masked = np.flatnonzero(infos["action_mask"][2] == 0)
        if step % 3 == 0 and masked.size:  # a masked action ends that route, untrained
            actions[2] = masked[0]
        obs, rewards, terminated, _, infos = envs.step(actions)
        for i in np.flatnonzero(terminated):
            final = infos["final_info"]
            path = final["path"][i]
            finished.append((int(final["sample_index"][i]), path[path >= 0].tolist()))
    assert envs.network.num_updates >= 5
    if routing == "layered":
        assert any(len(path) < 3 or path[-1] == envs.network.extra_action for _, path in finished)
    single = RoutingEnv("synthetic-mtl", **kwargs)
    for number, (index, path) in enumerate(finished):
        single.reset(seed=5 if number == 0 else None, options={"sample_index": index})
        for action in path:
            single.step(action)
    assert single.network.num_updates == envs.network.num_updates
    assert single.network.pending_routes == envs.network.pending_routes
    assert torch.equal(params(single.network), params(envs.network))


# ---------------------------------------------------------------------- invalid actions


def test_masked_action_ends_only_that_route_as_wrong_without_training():
    envs = RoutingVectorEnv(3, "digits-mtl", module_batch_size=1)
    envs.reset(seed=0)
    envs.step(np.array([0, 1, 2]))
    envs.step(np.array([0, 1, 2]))
    before = params(envs.network)
    # PASS (10) into the logits layer is masked for sub-env 1.
    obs, rewards, terminated, _, infos = envs.step(np.array([3, 10, 4]))
    assert terminated.all()
    final = infos["final_info"]
    assert final["invalid_action"].tolist() == [False, True, False]
    assert rewards[1] == -1.0 and final["final_reward"][1] == -1.0
    assert final["correct"][1] == False  # noqa: E712 (NumPy bool)
    assert final["prediction"][1] == -1 and final["loss"][1] == -1.0
    assert final["path"][1].tolist() == [1, 1, 10]
    assert infos["final_obs"][1]["depth"] == 3
    assert envs.network.num_updates == 2  # the two valid routes only
    assert not torch.equal(before, params(envs.network))


def test_masked_action_ends_the_route_early_and_it_restarts():
    envs = RoutingVectorEnv(2, "mnist1d-mtl", dataset_options={"num_samples": 1000})
    obs, infos = envs.reset(seed=0)
    # MNIST-1D inputs (40) differ from hidden (64): PASS is masked at depth 0.
    assert infos["action_mask"][0, 10] == 0
    obs, rewards, terminated, _, infos = envs.step(np.array([10, 2]))
    assert terminated.tolist() == [True, False]
    assert infos["_final_info"].tolist() == [True, False]
    # Rows that did not finish hold "not final" values, never None.
    assert infos["final_info"]["path"].tolist() == [[10, -1, -1], [-1, -1, -1]]
    assert infos["final_info"]["route_done"].tolist() == [True, False]
    assert infos["final_obs"][0]["depth"] == 1 and infos["final_obs"][1] is None
    assert obs["depth"].tolist() == [0, 1]
    assert infos["path"].tolist() == [[-1, -1, -1], [2, -1, -1]]
    # Sub-environments at different depths step on together.
    obs, rewards, terminated, _, infos = envs.step(np.array([1, 3]))
    assert obs["depth"].tolist() == [1, 2]


def test_raise_mode_names_the_sub_environment_and_changes_nothing():
    envs = RoutingVectorEnv(3, "digits-mtl", invalid_action="raise")
    envs.reset(seed=0)
    envs.step(np.array([1, 1, 1]))
    envs.step(np.array([1, 1, 1]))
    depth = envs._depth.copy()
    with pytest.raises(ValueError, match=r"sub-environment 2: action 10 is masked at depth 2"):
        envs.step(np.array([0, 0, 10]))
    np.testing.assert_array_equal(envs._depth, depth)
    obs, rewards, terminated, _, infos = envs.step(np.array([0, 0, 0]))
    assert terminated.all()


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        ([0, 11], "outside the action space"),
        ([-1, 0], "outside the action space"),
        ([0.5, 1], "not an integer"),
        ([0, 1, 2], r"shape \(2,\)"),
        (["a", "b"], "must be an integer"),
    ],
)
def test_bad_actions_raise(actions, match):
    envs = RoutingVectorEnv(2, "digits-mtl")
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        envs.step(np.array(actions))


def test_step_before_reset_and_bad_arguments_raise():
    with pytest.raises(RuntimeError, match="before reset"):
        RoutingVectorEnv(2, "digits-mtl").step(np.array([0, 0]))
    with pytest.raises(ValueError, match="num_envs"):
        RoutingVectorEnv(0, "digits-mtl")
    with pytest.raises(ValueError, match="invalid_action"):
        RoutingVectorEnv(2, "digits-mtl", invalid_action="ignore")
    envs = RoutingVectorEnv(2, "digits-mtl")
    with pytest.raises(ValueError, match="sample_index"):
        envs.reset(options={"sample_index": [0]})
    with pytest.raises(ValueError, match="outside"):
        envs.reset(options={"sample_index": [0, 10**6]})
    obs, infos = envs.reset(options={"sample_index": [4, 9]})
    assert infos["sample_index"].tolist() == [4, 9]


# ---------------------------------------------------------------------- recurrent routing


def test_recurrent_routes_of_different_lengths():
    envs = RoutingVectorEnv(4, "digits-mtl", routing="recurrent", max_depth=3)
    obs, infos = envs.reset(seed=0)
    samples = infos["sample_index"].copy()
    stop = envs.network.extra_action
    # Sub-env 0 stops at once, 1 after one module, 2 after two, 3 runs three modules.
    plan = [[stop, 4, 1, 2], [0, stop, 5, 3], [0, 0, stop, 7]]
    lengths = {}
    for step, actions in enumerate(plan):
        obs, rewards, terminated, _, infos = envs.step(np.array(actions))
        for i in np.flatnonzero(terminated):
            path = infos["final_info"]["path"][i]
            lengths[int(i)] = tuple(path[path >= 0].tolist())
            assert infos["final_obs"][i]["depth"] == len(lengths[int(i)])
        if step == 0:
            assert terminated.tolist() == [True, False, False, False]
            assert obs["depth"].tolist() == [0, 1, 1, 1]
    assert terminated.tolist() == [False, False, True, True]  # 0 and 1 restarted
    assert lengths[0] == (stop,) and lengths[1] == (4, stop)
    assert lengths[2] == (1, 5, stop) and lengths[3] == (2, 3, 7)
    # The final outputs are the network's outputs on those routes.
    net = envs.network
    final = infos["final_info"]
    for i, path in ((2, lengths[2]), (3, lengths[3])):
        route = torch.tensor([list(path) + [-1] * (3 - len(path))])
        x = torch.as_tensor(envs.dataset.train.x[samples[i : i + 1]])
        task = torch.as_tensor(envs.dataset.train.task[samples[i : i + 1]])
        with torch.no_grad():
            logits = net(x, task, route)[0].numpy()
        assert final["prediction"][i] == int(np.argmax(logits))
        np.testing.assert_allclose(infos["final_obs"][i]["activation"][:2], logits, atol=1e-5)


# ---------------------------------------------------------------------- rewards and sharing


def test_neg_loss_and_regression_rewards():
    envs = RoutingVectorEnv(3, "digits-mtl", reward="neg_loss")
    envs.reset(seed=0)
    for _ in range(3):
        obs, rewards, terminated, _, infos = envs.step(np.array([1, 2, 3]))
    np.testing.assert_allclose(rewards, -infos["final_info"]["loss"])
    reg = RoutingVectorEnv(
        2, "regression-two-mode", dataset_options={"samples": 200, "test_samples": 50}
    )
    reg.reset(seed=0)
    for _ in range(3):
        obs, rewards, terminated, _, infos = reg.step(np.array([0, 1]))
    final = infos["final_info"]
    assert terminated.all() and final["correct"].tolist() == [False, False]
    assert final["prediction"].dtype == final["label"].dtype == np.float64
    np.testing.assert_allclose(rewards, -final["loss"])
    assert np.all(np.isfinite(final["prediction"].astype(float)))


def test_collaboration_reward_reads_the_window_before_the_step():
    envs = RoutingVectorEnv(4, "digits-mtl", collaboration_reward=0.9, collaboration_window=4)
    envs.reset(seed=0)
    obs, rewards, *_ = envs.step(np.array([2, 2, 2, 5]))
    assert rewards.tolist() == [0.0] * 4  # the window was empty
    for _ in range(2):
        envs.step(np.array([0, 0, 0, 0]))
    # Layer 0 window now holds [2, 2, 2, 5]: C(2) = 3/4, C(5) = 1/4, C(7) = 0.
    obs, rewards, *_ = envs.step(np.array([2, 5, 7, 10]))
    np.testing.assert_allclose(rewards, [0.3 * 0.75, 0.3 * 0.25, 0.0, 0.0])


def test_vectorised_window_matches_recording_one_by_one():
    rng = np.random.default_rng(0)
    one, many = SelectionHistory(2, 6, window=7), SelectionHistory(2, 6, window=7)
    for size in (3, 5, 9, 20, 1, 7, 15):
        layers = rng.integers(0, 2, size)
        actions = rng.integers(0, 5, size)
        for layer, action in zip(layers.tolist(), actions.tolist(), strict=True):
            one.record(layer, action)
        many.record_many(layers, actions)
        for layer in range(2):
            for action in range(6):
                assert one.frequency(layer, action) == many.frequency(layer, action)
        np.testing.assert_array_equal(one._recent, many._recent)


def test_shared_network_test_split_does_not_train_and_reads_in_order():
    train = RoutingVectorEnv(3, "digits-mtl", module_batch_size=1)
    test = RoutingVectorEnv(3, "digits-mtl", split="test", network=train.network)
    assert test.network is train.network and test.train_modules is False
    before = params(train.network)
    obs, infos = test.reset(seed=0)
    assert infos["sample_index"].tolist() == [0, 1, 2]
    for _ in range(3):
        obs, rewards, terminated, _, infos = test.step(np.array([1, 2, 3]))
    assert infos["sample_index"].tolist() == [3, 4, 5]
    assert torch.equal(before, params(train.network)) and train.network.num_updates == 0
    with pytest.raises(ValueError, match="num_modules"):
        RoutingVectorEnv(2, "digits-mtl", network=train.network, num_modules=4)
    frozen = RoutingVectorEnv(2, "digits-mtl", train_modules=False, module_batch_size=1)
    frozen.reset(seed=0)
    start = params(frozen.network)
    for _ in range(6):
        frozen.step(np.array([0, 1]))
    assert torch.equal(start, params(frozen.network))


def test_a_pass_over_the_split_shows_every_sample_once():
    envs = RoutingVectorEnv(16, "synthetic-mtl", dataset_options=SMALL_SYNTHETIC)
    obs, infos = envs.reset(seed=0)
    seen = list(infos["sample_index"])
    while len(seen) < envs.num_samples:
        for _ in range(3):
            obs, rewards, terminated, _, infos = envs.step(np.zeros(16, dtype=np.int64))
        seen += list(infos["sample_index"])
    assert sorted(seen[: envs.num_samples]) == list(range(envs.num_samples))


# ---------------------------------------------------------------------- training agents


def test_train_on_the_vector_env_learns_synthetic_tasks():
    single = RoutingEnv("synthetic-mtl", dataset_options=SMALL_SYNTHETIC)
    envs = gym.make_vec(
        "routing_env/SyntheticMTL-v0",
        num_envs=64,
        vectorization_mode="vector_entry_point",
        dataset_options=SMALL_SYNTHETIC,
    )
    test = RoutingEnv(
        "synthetic-mtl", split="test", network=envs.network, dataset_options=SMALL_SYNTHETIC
    )
    agent = agents.make_agent("wpl", single, seed=0)  # sized by a single env, used batched
    history = agents.train(
        agent, envs, episodes=20_000, eval_env=test, eval_every=4_000, progress=False, seed=0
    )
    assert history["episode"] == [4_000, 8_000, 12_000, 16_000, 20_000]
    assert len(history["test_accuracy"]) == 5
    train_accuracy = history["train_accuracy"]
    assert train_accuracy[-1] > train_accuracy[0] + 0.08
    assert history["final"]["test_accuracy"] > 0.6
    # The routers learned: the policy is no longer uniform.
    assert agent.pi.max() > 0.5


def test_train_on_the_vector_env_counts_routes_and_episodes():
    envs = RoutingVectorEnv(8, "digits-mtl", module_batch_size=8)
    seen = []

    class Recorder(agents.RandomRouter):
        def learn_batch(self, episodes):
            seen.extend(episodes)

    history = agents.train(Recorder(seed=0), envs, episodes=50, eval_every=20, progress=False)
    assert history["episode"] == [20, 40, 50] and len(seen) == 50
    for episode in seen:
        assert len(episode) == 3 and episode.final_info["path"].tolist() == episode.actions
        assert [obs["depth"] for obs in episode.observations] == [0, 1, 2]
        assert sum(episode.rewards) == episode.final_info["final_reward"]
        assert episode.infos[0]["action_mask"].shape == (11,)


def test_vector_training_hands_over_the_routes_a_single_env_replays():
    """Routes of different lengths (recurrent, stop) come as an EpisodeBatch whose episodes
    are what routing each sample alone gives (frozen modules, so the replay is exact)."""
    envs = RoutingVectorEnv(6, "digits-mtl", routing="recurrent", train_modules=False)
    single = RoutingEnv("digits-mtl", network=envs.network, train_modules=False)
    batches = []

    class Recorder(agents.RandomRouter):
        def learn_batch(self, episodes):
            batches.append(episodes)

    agents.train(Recorder(seed=1), envs, episodes=40, progress=False, seed=0)
    assert all(isinstance(batch, agents.base.EpisodeBatch) for batch in batches)
    routes = [episode for batch in batches for episode in batch]
    assert len(routes) == 40 and len({len(episode) for episode in routes}) > 1
    for episode in routes:
        info = episode.final_info
        obs, first_info = single.reset(options={"sample_index": info["sample_index"]})
        replay = [(obs, first_info)]
        for action in episode.actions:
            obs, reward, terminated, _, step_info = single.step(action)
            replay.append((obs, step_info))
        assert terminated and agents.route_path(info) == tuple(episode.actions)
        np.testing.assert_array_equal(info["path"], step_info["path"])
        assert episode.rewards[-1] == reward and info["correct"] == step_info["correct"]
        for seen, (expected, expected_info), mask in zip(
            episode.observations, replay, (i["action_mask"] for i in episode.infos), strict=False
        ):
            assert seen["task"] == expected["task"] and seen["depth"] == expected["depth"]
            np.testing.assert_allclose(seen["activation"], expected["activation"], atol=1e-5)
            np.testing.assert_array_equal(mask, expected_info["action_mask"])
    returns = np.concatenate([batch.total_rewards() for batch in batches])
    np.testing.assert_array_equal(returns, [sum(episode.rewards) for episode in routes])


def test_train_refuses_dispatched_routers_and_vector_eval_envs():
    envs = RoutingVectorEnv(2, "digits-mtl")
    with pytest.raises(TypeError, match="Dispatched"):
        agents.train(agents.make_agent("dispatched-wpl", envs), envs, episodes=4, progress=False)
    with pytest.raises(TypeError, match="eval_env"):
        agents.train(agents.RandomRouter(seed=0), envs, episodes=4, eval_env=envs, progress=False)


# ---------------------------------------------------------------------- reusing the routing graph


def count_graph_updates(monkeypatch) -> list[int]:
    """Count the module updates that reused the routing forward pass."""
    reused = []
    original = RoutedNetwork._update_from

    def counted(self, *args):
        reused.append(1)
        return original(self, *args)

    monkeypatch.setattr(RoutedNetwork, "_update_from", counted)
    return reused


def replay(finished, seed, **kwargs) -> RoutingEnv:
    """The single env trained on ``finished`` (sample index, path) routes, in order."""
    single = RoutingEnv("digits-mtl", **kwargs)
    for number, (index, path) in enumerate(finished):
        single.reset(seed=seed if number == 0 else None, options={"sample_index": index})
        for action in path:
            single.step(action)
    return single


@pytest.mark.parametrize("kernel", ["torch", "compiled"])
def test_updates_from_the_routing_graph_equal_the_recomputed_ones(monkeypatch, request, kernel):
    """Routes that end together as one module batch train from the routing pass's graph,
    and give bit for bit the parameters that recomputing the pass gives (the single env).
    The compiled CPU update records no graph: it computes the forward pass again, faster."""
    if kernel == "torch":
        request.getfixturevalue("torch_row_kernel")
    reused = count_graph_updates(monkeypatch)
    envs = RoutingVectorEnv(9, "digits-mtl", module_batch_size=9, num_modules=4)
    rng = np.random.default_rng(3)
    obs, infos = envs.reset(seed=2)
    finished = []
    for step in range(45):
        actions = random_valid(rng, infos["action_mask"])
        if step == 41:  # PASS into the logits, masked: 8 routes left, the rest recompute
            actions[4] = envs.network.extra_action
        obs, rewards, terminated, _, infos = envs.step(actions)
        final = infos.get("final_info")
        for i in np.flatnonzero(terminated):
            if not final["invalid_action"][i]:
                finished.append((int(final["sample_index"][i]), final["path"][i]))
    net = envs.network
    assert net.num_updates == 14 and len(reused) == (13 if kernel == "torch" else 0)
    assert any(path[0] == 4 or path[1] == 4 for _, path in finished)  # identity slot used
    single = replay(finished, 2, module_batch_size=9, num_modules=4)
    assert single.network.num_updates == net.num_updates
    assert single.network.pending_routes == net.pending_routes == 8
    assert torch.equal(params(single.network), params(net))


def test_a_stale_routing_graph_is_not_used(monkeypatch, torch_row_kernel):
    """An update between routing and training (another env on the network) makes the
    graph stale: those routes are trained by recomputing their forward pass."""
    reused = count_graph_updates(monkeypatch)
    envs = RoutingVectorEnv(4, "digits-mtl", module_batch_size=4)
    other = RoutingEnv("digits-mtl", network=envs.network)
    obs, infos = envs.reset(seed=0)
    envs.step(np.array([0, 1, 2, 3]))
    finished = []
    other.reset(seed=1)
    while len(finished) < 4:  # another module batch, from the other env
        obs, reward, terminated, _, info = other.step(len(finished))
        if terminated:
            finished.append((info["sample_index"], info["path"]))
            other.reset()
    assert envs.network.num_updates == 1
    envs.step(np.array([0, 1, 2, 3]))
    obs, rewards, terminated, _, infos = envs.step(np.array([4, 5, 6, 7]))
    assert terminated.all() and envs.network.num_updates == 2 and not reused
    samples = infos["final_info"]["sample_index"].tolist()
    finished += [
        (index, path) for index, path in zip(samples, infos["final_info"]["path"], strict=True)
    ]
    assert torch.equal(
        params(replay(finished, 0, module_batch_size=4).network), params(envs.network)
    )
    for _ in range(3):  # the next batch routes afresh and reuses its own graph
        envs.step(np.array([0, 1, 2, 3]))
    assert len(reused) == 1 and envs.network.num_updates == 3


def test_no_graph_without_module_training():
    envs = RoutingVectorEnv(4, "digits-mtl", split="test")
    obs, infos = envs.reset(seed=0)
    for _ in range(2):
        envs.step(np.array([0, 1, 2, 3]))
        assert envs._graph is None and not envs._h.requires_grad
    training = RoutingVectorEnv(4, "digits-mtl", routing="recurrent")
    training.reset(seed=0)
    training.step(np.array([0, 1, 2, 3]))
    assert training._graph is None  # recurrent routes end at different times: recompute


def test_no_graph_for_a_batch_that_cannot_train_from_it():
    """Only a batch of exactly module_batch_size routes trains from its routing graph, so
    other batch sizes route without recording one; the parameters are those of the replay."""
    envs = RoutingVectorEnv(8, "digits-mtl", module_batch_size=4, num_modules=4)
    rng = np.random.default_rng(4)
    obs, infos = envs.reset(seed=3)
    finished = []
    for _ in range(9):
        obs, rewards, terminated, _, infos = envs.step(random_valid(rng, infos["action_mask"]))
        assert envs._graph is None
        final = infos.get("final_info")
        for i in np.flatnonzero(terminated):
            finished.append((int(final["sample_index"][i]), final["path"][i]))
    assert envs.network.num_updates == 6
    single = replay(finished, 3, module_batch_size=4, num_modules=4)
    assert torch.equal(params(single.network), params(envs.network))


# ---------------------------------------------------------------------- exploration squashing


def test_exploration_marks_per_sub_env_match_the_single_env():
    marks = [(True, False, False), (False, False, False), (True, True, True), (False, True, False)]
    actions = [(1, 3, 2), (0, 10, 0), (4, 4, 4), (2, 10, 1)]
    vector = RoutingVectorEnv(4, "digits-mtl", module_batch_size=4, squash_kappa=1.5)
    vector.reset(seed=0, options={"sample_index": np.array([3, 8, 21, 40])})
    for depth in range(3):
        vector.mark_exploratory(np.array([m[depth] for m in marks]))
        vector.step(np.array([a[depth] for a in actions]))
    assert vector.network.num_updates == 1

    single = RoutingEnv("digits-mtl", module_batch_size=4, squash_kappa=1.5)
    single.reset(seed=0)
    for sample, route, route_marks in zip((3, 8, 21, 40), actions, marks, strict=True):
        single.reset(options={"sample_index": sample})
        for action, explored in zip(route, route_marks, strict=True):
            single.mark_exploratory(explored)
            single.step(action)
    assert single.network.num_updates == 1
    torch.testing.assert_close(params(vector.network), params(single.network))


def test_fully_exploratory_vector_routes_leave_the_modules_unchanged():
    env = RoutingVectorEnv(2, "digits-mtl", module_batch_size=2, squash_kappa=3)
    env.reset(seed=0)
    before = params(env.network)
    for _ in range(3):
        env.mark_exploratory(np.array([True, True]))
        env.step(np.array([0, 1]))
    assert env.network.num_updates == 1
    assert torch.equal(before, params(env.network))
    with pytest.raises(ValueError, match="one per sub-environment"):
        env.mark_exploratory([True])


def test_vector_train_reports_exploration():
    for kappa, unchanged in ((5.0, True), (0.0, False)):
        env = RoutingVectorEnv(8, "digits-mtl", squash_kappa=kappa)
        agent = agents.QLearning(10, 3, 11, lr=0.0, epsilon=1.0, seed=0)
        agent.q[:, :, 0] = 1.0  # a unique greedy action that epsilon = 1 never takes
        env.reset(seed=0)
        before = params(env.network)
        agents.train(agent, env, 64, seed=None, progress=False)
        assert env.network.num_updates == 4
        assert torch.equal(before, params(env.network)) is unchanged
