
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import routing_env
from agents import FixedRouter, RandomRouter
from agents.training import evaluate, run_episode
from routing_env.datasets import DatasetNotFoundError
from routing_env.env import RoutingEnv

SMALL_SYNTHETIC = {"samples_per_task": 100, "test_samples_per_task": 20}
OFFLINE_SUITES = [
    ("digits-mtl", None),
    ("mnist1d-mtl", {"num_samples": 1000}),
    ("synthetic-mtl", SMALL_SYNTHETIC),
    ("regression-two-mode", {"samples": 200, "test_samples": 50}),
]


def params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
@pytest.mark.parametrize(("suite", "options"), OFFLINE_SUITES)
def test_check_env_passes_on_offline_suites(suite, options, routing):
    env = RoutingEnv(suite, routing=routing, dataset_options=options)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_check_env_passes_on_fashion(fashion_dir, routing):
    options = {"per_class": 20, "test_per_class": 2}
    env = RoutingEnv("fashion-mtl", routing=routing, dataset_options=options)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs["activation"].shape == (env.network.activation_dim,)


def test_registered_ids_make_envs():
    env = gym.make("routing_env/DigitsMTL-v0")
    obs, info = env.reset(seed=0)
    assert env.action_space.n == 11
    assert obs["activation"].shape == (64,) and obs["activation"].dtype == np.float32
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].shape == (11,)
    assert isinstance(env.unwrapped.network, routing_env.RoutedNetwork)
    for env_id in routing_env.SUITE_IDS:
        assert f"routing_env/{env_id}" in gym.registry


def test_routing_v0_takes_a_dataset_object_and_an_npz(tmp_path):
    dataset = routing_env.load_suite("synthetic-mtl", **SMALL_SYNTHETIC)
    env = gym.make("routing_env/Routing-v0", dataset=dataset)
    assert env.unwrapped.dataset is dataset
    path = tmp_path / "data.npz"
    dataset.to_npz(path)
    env = gym.make("routing_env/Routing-v0", dataset=str(path))
    np.testing.assert_array_equal(env.unwrapped.dataset.train.x, dataset.train.x)


def test_suites_with_missing_files_fail_at_make_naming_data_dir(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="data_dir"):
        gym.make("routing_env/MNIST-MTL-v0", data_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="data_dir"):
        gym.make("routing_env/CIFAR-MTL-v0", data_dir=str(tmp_path))


def test_unknown_suite_raises_naming_it():
    with pytest.raises(ValueError, match="no-such-suite"):
        RoutingEnv("no-such-suite")


def test_layered_route_has_max_depth_decisions_and_end_info():
    env = RoutingEnv("digits-mtl")
    obs, info = env.reset(seed=3)
    assert obs["depth"] == 0 and "task" not in info
    assert info["route_done"] is False and info["path"].tolist() == [-1, -1, -1]
    assert info["prediction"] == info["label"] == -1 and info["loss"] == -1.0
    # Digits has 64 inputs = hidden_dim, so PASS is allowed everywhere but at the logits layer.
    assert info["action_mask"].tolist() == [1] * 11
    rewards = []
    for depth, action in enumerate([2, 10, 5]):
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert truncated is False
        assert terminated is (depth == 2)
        if depth == 0:
            assert info["action_mask"].tolist() == [1] * 11
        if depth == 1:
            assert info["action_mask"].tolist() == [1] * 10 + [0]
            assert info["path"].tolist() == [2, 10, -1] and info["route_done"] is False
    assert rewards[:2] == [0.0, 0.0]
    assert info["path"].tolist() == [2, 10, 5] and info["route_done"] is True
    assert rewards[2] == (1.0 if info["correct"] else -1.0)
    assert info["correct"] == (info["prediction"] == info["label"])
    assert info["invalid_action"] is False
    assert info["action_mask"].tolist() == [1] * 11  # terminal: drawable, never acted on
    assert obs["depth"] == 3
    # The terminal activation holds the logits (2 classes), zero-padded.
    assert np.all(obs["activation"][2:] == 0)


def test_masked_action_ends_route_as_wrong_without_training():
    env = RoutingEnv("digits-mtl", module_batch_size=1)
    env.reset(seed=0)
    before = params(env.network)
    env.step(0)
    env.step(0)
    obs, reward, terminated, truncated, info = env.step(10)  # PASS into the logits layer
    assert terminated and reward == -1.0
    assert info["invalid_action"] is True and info["correct"] is False
    assert info["prediction"] == -1 and info["loss"] == -1.0
    assert info["path"].tolist() == [0, 0, 10] and info["route_done"] is True
    assert env.network.num_updates == 0
    assert torch.equal(before, params(env.network))


def test_masked_action_under_raise_names_action_and_mask():
    env = RoutingEnv("digits-mtl", invalid_action="raise")
    env.reset(seed=0)
    env.step(1)
    env.step(1)
    with pytest.raises(ValueError, match=r"action 10 is masked at depth 2.*allowed actions"):
        env.step(10)


@pytest.mark.parametrize("bad", [11, -1, 1.5, "a", None])
def test_action_outside_space_raises(bad):
    env = RoutingEnv("digits-mtl")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


def test_numpy_actions_are_accepted():
    env = RoutingEnv("digits-mtl")
    env.reset(seed=0)
    env.step(np.int64(3))
    env.step(np.array(4))


def test_step_after_end_and_before_reset_raise():
    env = RoutingEnv("digits-mtl")
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset(seed=0)
    for _ in range(3):
        env.step(0)
    with pytest.raises(RuntimeError, match="after the route ended"):
        env.step(0)


def _rollout(seed: int, routes: int = 120) -> list:
    env = RoutingEnv("digits-mtl", module_batch_size=8)
    actions = np.random.default_rng(123).integers(0, 10, size=(routes, 3))
    trace = []
    obs, info = env.reset(seed=seed)
    for route in actions:
        for action in route:
            obs, reward, terminated, truncated, info = env.step(int(action))
            trace.append((obs["activation"].copy(), obs["task"], obs["depth"], reward, dict(info)))
        obs, info = env.reset()
        trace.append((obs["activation"].copy(), obs["task"], obs["depth"], 0.0, dict(info)))
    return trace


def _same(a, b) -> bool:
    for (act_a, *rest_a), (act_b, *rest_b) in zip(a, b, strict=True):
        if not np.array_equal(act_a, act_b):
            return False
        info_a, info_b = rest_a[-1], rest_b[-1]
        if rest_a[:-1] != rest_b[:-1] or info_a.keys() != info_b.keys():
            return False
        for key in info_a:
            if not np.array_equal(info_a[key], info_b[key], equal_nan=key == "loss"):
                return False
    return True


def test_one_seed_one_action_sequence_is_reproducible():
    first, second, other = _rollout(seed=7), _rollout(seed=7), _rollout(seed=8)
    assert _same(first, second)
    assert not _same(first, other)


def test_reset_seed_draws_parameters_only_for_an_untrained_own_network():
    a, b = RoutingEnv("digits-mtl", module_batch_size=1), RoutingEnv("digits-mtl")
    a.reset(seed=1)
    b.reset(seed=2)
    assert not torch.equal(params(a.network), params(b.network))
    a.step(0), a.step(0), a.step(0)
    assert a.network.num_updates == 1
    trained = params(a.network)
    a.reset(seed=1)
    assert torch.equal(trained, params(a.network))
    shared = RoutingEnv("digits-mtl", split="test", network=b.network)
    before = params(b.network)
    shared.reset(seed=99)
    assert torch.equal(before, params(b.network))


def test_modules_update_once_per_batch_and_only_on_the_route():
    env = RoutingEnv("digits-mtl", module_batch_size=4)
    env.reset(seed=0)
    net = env.network
    before = [params(m) for layer in net.layers for m in layer]
    for route in range(4):
        assert net.num_updates == 0
        for action in (1, 10, 2) if route % 2 else (1, 3, 2):
            env.step(action)
        env.reset()
    assert net.num_updates == 1 and net.pending_routes == 0
    after = [params(m) for layer in net.layers for m in layer]
    pairs = enumerate(zip(before, after, strict=True))
    changed = {(i // 10, i % 10) for i, (b, a) in pairs if not torch.equal(b, a)}
    assert changed == {(0, 1), (1, 3), (2, 2)}


def test_train_modules_false_freezes_the_network():
    env = RoutingEnv("digits-mtl", train_modules=False, module_batch_size=1)
    env.reset(seed=0)
    before = params(env.network)
    for _ in range(50):
        run_episode(RandomRouter(seed=0), env)
    assert torch.equal(before, params(env.network))
    assert env.network.num_updates == 0


def test_test_split_does_not_train_shared_network():
    train = RoutingEnv("digits-mtl", module_batch_size=1)
    test = RoutingEnv("digits-mtl", split="test", network=train.network)
    assert test.train_modules is False and test.sample_order == "sequential"
    before = params(train.network)
    router = RandomRouter(seed=0)
    infos = [run_episode(router, test).final_info for _ in range(20)]
    assert [i["sample_index"] for i in infos] == list(range(20))
    assert torch.equal(before, params(train.network))


def test_network_keywords_conflict_with_a_given_network():
    env = RoutingEnv("digits-mtl")
    with pytest.raises(ValueError, match="module_lr"):
        RoutingEnv("digits-mtl", network=env.network, module_lr=0.5)
    with pytest.raises(
        ValueError, match="does not fit dataset .synthetic-mtl.: the network.s input_shape"
    ):
        RoutingEnv("synthetic-mtl", dataset_options=SMALL_SYNTHETIC, network=env.network)


def test_neg_loss_reward_is_minus_the_loss():
    env = RoutingEnv("digits-mtl", reward="neg_loss")
    env.reset(seed=0)
    for action in (0, 1, 2):
        _, reward, terminated, _, info = env.step(action)
    assert terminated and reward == pytest.approx(-info["loss"])
    assert info["loss"] > 0


def test_regression_suite_defaults_to_neg_loss_and_rejects_correct():
    env = RoutingEnv("regression-two-mode", num_modules=2)
    assert env.reward_kind == "neg_loss"
    env.reset(seed=0)
    for action in (0, 1, 0):
        _, reward, terminated, _, info = env.step(action)
    assert info["correct"] is False and reward == pytest.approx(-info["loss"])
    assert isinstance(info["prediction"], float) and isinstance(info["label"], float)
    with pytest.raises(ValueError, match="neg_loss"):
        RoutingEnv("regression-two-mode", reward="correct")


def test_collaboration_reward_pays_rho_over_depth_times_frequency():
    env = RoutingEnv("digits-mtl", collaboration_reward=0.6, collaboration_window=4)
    env.reset(seed=0)
    _, first, *_ = env.step(3)
    assert first == 0.0  # empty window
    env.step(0)
    env.step(0)
    env.reset()
    _, second, *_ = env.step(3)  # window at layer 0: [3] -> C(3) = 1
    assert second == pytest.approx(0.6 / 3 * 1.0)
    env.step(10)  # PASS is never paid and not counted
    env.step(0)
    for action in (1, 2, 1):
        env.reset()
        env.step(action)
        env.step(0)
        env.step(0)
    env.reset()
    # window of 4 at layer 0 now holds [3, 1, 2, 1] -> C(1) = 0.5
    _, third, *_ = env.step(1)
    assert third == pytest.approx(0.6 / 3 * 0.5)


def test_negative_collaboration_reward_and_range():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        RoutingEnv("digits-mtl", collaboration_reward=1.5)


def test_recurrent_stop_and_max_depth():
    env = RoutingEnv("digits-mtl", routing="recurrent", max_depth=3, readout="per_task")
    obs, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [1] * 11
    obs, reward, terminated, _, info = env.step(10)
    assert terminated and info["path"].tolist() == [10, -1, -1]
    assert info["invalid_action"] is False
    env.reset()
    for step, action in enumerate((4, 4, 7)):
        obs, reward, terminated, _, info = env.step(action)
        assert terminated is (step == 2)
    assert info["path"].tolist() == [4, 4, 7] and obs["depth"] == 3


def test_render_ansi_shows_the_route():
    env = RoutingEnv("digits-mtl", render_mode="ansi")
    env.reset(seed=0)
    env.step(4)
    env.step(10)
    assert env.render().endswith("L0:m4 -> L1:PASS")
    env.step(1)
    assert "L2:m1" in env.render() and ("correct" in env.render() or "wrong" in env.render())


def test_action_masks_method_matches_info():
    env = RoutingEnv("digits-mtl")
    _, info = env.reset(seed=0)
    assert env.action_masks().dtype == bool
    np.testing.assert_array_equal(env.action_masks(), info["action_mask"].astype(bool))
    env.step(0), env.step(0)
    assert env.action_masks().tolist() == [True] * 10 + [False]


def test_nan_loss_raises_a_clear_error():
    env = RoutingEnv("regression-two-mode", num_modules=2, module_lr=1e12, module_batch_size=1)
    env.reset(seed=0)
    with pytest.raises(FloatingPointError, match="module loss"):
        router = FixedRouter({0: (0, 0, 0), 1: (1, 1, 1)})
        for _ in range(200):
            run_episode(router, env)


def test_sample_index_option_and_its_range():
    env = RoutingEnv("digits-mtl")
    obs, info = env.reset(seed=0, options={"sample_index": 5})
    assert info["sample_index"] == 5
    with pytest.raises(ValueError, match="sample index"):
        env.reset(options={"sample_index": env.num_samples})


def test_fixed_per_task_routes_reach_95_percent_on_digits():
    env = RoutingEnv("digits-mtl")
    env.reset(seed=0)
    router = FixedRouter.per_task(10, 3, 10)
    for _ in range(25_000):
        run_episode(router, env)
    test_env = RoutingEnv("digits-mtl", split="test", network=env.network)
    result = evaluate(router, test_env)
    assert result["episodes"] == test_env.num_samples
    assert result["accuracy"] >= 0.95, result


# ---------------------------------------------------------------------- exploration squashing


def _route_with_marks(marks, route=(1, 3, 2), **kwargs):
    """Parameters before and after one module update on sample 7 routed along ``route``, with
    the given exploratory marks."""
    env = RoutingEnv("digits-mtl", module_batch_size=1, **kwargs)
    env.reset(seed=0, options={"sample_index": 7})
    before = params(env.network)
    for action, explored in zip(route, marks, strict=True):
        if explored is not None:
            env.unwrapped.mark_exploratory(explored)
        env.step(action)
    assert env.network.num_updates == 1
    return before, params(env.network)


def test_squashing_with_kappa_zero_is_the_unsquashed_update():
    _, plain = _route_with_marks((None, None, None))
    _, marked = _route_with_marks((True, False, True), squash_kappa=0)
    assert torch.equal(plain, marked)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fully_exploratory_route_leaves_the_modules_unchanged(optimizer):
    options = {"squash_kappa": 1, "module_optimizer": optimizer}
    before, after = _route_with_marks((True, True, True), **options)
    assert torch.equal(before, after)
    before, after = _route_with_marks((True, True, False), **options)
    assert not torch.equal(before, after)


def test_partial_squashing_scales_the_sgd_step_by_eq_7_4():
    before, plain = _route_with_marks((None, None, None))
    _, squashed = _route_with_marks((True, False, None), squash_kappa=2)
    factor = (1 - 1 / 3) ** 2
    torch.testing.assert_close(squashed - before, factor * (plain - before), rtol=1e-4, atol=1e-7)
    assert not torch.equal(squashed, plain)


def test_marks_apply_to_one_step_and_need_a_route():
    env = RoutingEnv("digits-mtl", squash_kappa=1)
    with pytest.raises(RuntimeError, match="no route in progress"):
        env.mark_exploratory(True)
    env.reset(seed=0)
    env.mark_exploratory(True)
    env.step(0)
    assert env._exploratory_count == 1 and not env._next_exploratory
    env.step(0)
    env.step(0)
    with pytest.raises(RuntimeError, match="no route in progress"):
        env.mark_exploratory(True)
    for bad in (-1.0, float("inf"), "2"):
        with pytest.raises(ValueError, match="squash_kappa"):
            RoutingEnv("digits-mtl", squash_kappa=bad)


def test_train_reports_exploration_so_random_branch_routes_do_not_train():
    from agents import QLearning, train

    for kappa, unchanged in ((5.0, True), (0.0, False)):
        env = RoutingEnv("digits-mtl", squash_kappa=kappa)
        agent = QLearning(10, 3, 11, lr=0.0, epsilon=1.0, seed=0)
        agent.q[:, :, 0] = 1.0  # a unique greedy action that epsilon = 1 never takes
        env.reset(seed=0)
        before = params(env.network)
        train(agent, env, 64, seed=None, progress=False)
        assert env.network.num_updates == 4
        assert torch.equal(before, params(env.network)) is unchanged


def test_network_keyword_accepts_the_networks_own_values_and_names_a_conflict():
    same = {"num_modules": 4, "max_depth": 2, "module_lr": 0.2, "module_batch_size": 8}
    train = gym.make("routing_env/DigitsMTL-v0", **same)
    network = train.unwrapped.network
    test = gym.make("routing_env/DigitsMTL-v0", split="test", network=network, **same)
    assert test.unwrapped.network is network
    RoutingEnv("digits-mtl", network=network, device="cpu", routing="layered")
    with pytest.raises(ValueError, match=r"module_lr=0\.5.*module_lr=0\.2"):
        RoutingEnv("digits-mtl", network=network, module_lr=0.5)
    with pytest.raises(ValueError, match="trunk cannot be set here"):
        RoutingEnv("digits-mtl", network=network, trunk="mlp")
