"""Batched greedy evaluation gives the results of routing the samples one by one."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents.evaluation
from agents import FixedRouter, PerTask, make_agent, train
from agents.evaluation import batch_obstacle, evaluate_router, route_statistics
from agents.training import evaluate, run_episode
from agents.wpl import WPL
from routing_env import RoutingEnv, RoutingVectorEnv
from routing_env.metrics import evaluation_indices

#: Keys that must agree exactly; the means of float sums agree to rounding.
EXACT = ("accuracy", "per_task_accuracy", "routing_map", "modules_used", "route_entropy")
CLOSE = ("mean_loss", "mean_reward")
#: Evaluation samples of most cases: 24 per task of DigitsMTL (the whole split is 3,590).
SUBSET = 240

#: Environment settings: the network's keywords, then the test env's own.
SETTINGS = {
    "layered": ({}, {}),
    "recurrent": ({"routing": "recurrent"}, {}),
    "collaboration": ({}, {"collaboration_reward": 0.5}),
    "recurrent-per-task-readout-neg-loss-anti-collaboration": (
        {"routing": "recurrent", "readout": "per_task"},
        {"reward": "neg_loss", "collaboration_reward": -0.4},
    ),
}
ROUTERS = ("wpl", "q", "reinforce-approx", "q-approx", "actor-critic")


def envs(setting: str, num_envs: int = 16) -> tuple[RoutingVectorEnv, RoutingEnv]:
    """A training vector env and a test env sharing its network."""
    network_options, options = SETTINGS[setting]
    train_env = RoutingVectorEnv(num_envs, "digits-mtl", **network_options, **options)
    test_env = RoutingEnv("digits-mtl", split="test", network=train_env.network, **options)
    return train_env, test_env


def assert_same_evaluation(router, env, episodes=SUBSET) -> dict:
    """The batched evaluation (which must apply) equals the one-by-one reference."""
    assert batch_obstacle(router, env) is None
    reference = evaluate_router(router, env, episodes, batched=False)
    batched = evaluate_router(router, env, episodes)
    assert batched.keys() == reference.keys()
    assert batched["episodes"] == reference["episodes"]
    for key in EXACT:
        np.testing.assert_array_equal(batched[key], reference[key], err_msg=key)
    for key in CLOSE:
        assert batched[key] == pytest.approx(reference[key], rel=1e-6, nan_ok=True), key
    return reference


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("name", ROUTERS)
def test_batched_evaluation_equals_one_by_one_untrained_and_trained(name, setting):
    train_env, test_env = envs(setting)
    agent = make_agent(name, test_env, seed=3)
    assert_same_evaluation(agent, test_env)
    train(agent, train_env, 480, seed=3, progress=False)
    result = assert_same_evaluation(agent, test_env)
    if SETTINGS[setting][1].get("collaboration_reward"):
        # The window was filled during training: the collaboration reward is paid.
        history = train_env.network.selection_history
        assert history.frequencies(0, np.arange(train_env.network.num_actions)).sum() > 0
        assert result["mean_reward"] != pytest.approx(2 * result["accuracy"] - 1)


def test_the_whole_split_and_the_default_count():
    train_env, test_env = envs("layered", num_envs=32)
    agent = make_agent("wpl", test_env, seed=0)
    train(agent, train_env, 960, seed=0, progress=False)
    result = assert_same_evaluation(agent, test_env, episodes=None)
    assert result["episodes"] == test_env.num_samples == 3590
    # More samples than the split: all of it.
    assert evaluate_router(agent, test_env, 10_000) == evaluate_router(agent, test_env)
    # evaluate() (routers and SB3 models) takes the batched path by default as well.
    np.testing.assert_array_equal(evaluate(agent, test_env)["routing_map"], result["routing_map"])
    assert evaluate(agent, test_env, 50, batched=False)["episodes"] == 50


@pytest.mark.parametrize("episodes", [1, 7, 61])
def test_subsets_of_any_size(episodes):
    _, test_env = envs("recurrent")
    result = assert_same_evaluation(make_agent("q-approx", test_env, seed=1), test_env, episodes)
    assert result["episodes"] == episodes


@pytest.mark.parametrize("name", ["single-wpl", "per-task-reinforce-approx", "fixed-per-task"])
def test_architectures_and_fixed_routes(name):
    train_env, test_env = envs("collaboration")
    agent = make_agent(name, test_env, seed=2)
    if name != "fixed-per-task":
        train(agent, train_env, 320, seed=2, progress=False)
    assert_same_evaluation(agent, test_env)


def test_per_task_tabular_agents_use_the_table_of_each_task():
    train_env, test_env = envs("layered")
    sizes = {"num_tasks": 10, "max_depth": 3, "num_actions": 11}
    agent = PerTask.build(lambda seed: WPL(seed=seed, **sizes), 10, seed=0)
    train(agent, train_env, 320, seed=0, progress=False)
    masks = np.stack([test_env.network.action_mask(d) for d in range(3)]).astype(bool)
    table = agent.greedy_table(10, masks)
    expected = [agent.agents[t].greedy_table(10, masks)[t] for t in range(10)]
    np.testing.assert_array_equal(table, expected)
    assert_same_evaluation(agent, test_env)


def fixed_routes(extra: int) -> dict[int, tuple[int, ...]]:
    """Routes with PASS / stop (``extra``) at every depth, and masked actions."""
    patterns = [
        (0, 1, 2),
        (extra, 3, 4),  # layered (hidden 32): PASS masked at depth 0; recurrent: stop at once
        (5, extra, 6),  # PASS allowed at depth 1; recurrent: stop after one module
        (7, 8, extra),  # layered: PASS masked at the last depth; recurrent: stop after two
        (extra, extra, extra),
    ]
    return {task: patterns[task % len(patterns)] for task in range(10)}


class RoutesWithoutTable(FixedRouter):
    """Fixed routes acted one state at a time (no greedy table): the act_batch path."""

    def greedy_table(self, num_tasks, masks):
        return None


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
@pytest.mark.parametrize("kind", [FixedRouter, RoutesWithoutTable])
def test_pass_stop_and_masked_actions_end_routes_as_one_by_one(routing, kind):
    env = RoutingEnv("digits-mtl", split="test", routing=routing, hidden_dim=32)
    router = kind(fixed_routes(env.network.extra_action))
    masks = np.stack([env.network.action_mask(d) for d in range(3)]).astype(bool)
    assert (router.greedy_table(10, masks) is None) == (kind is RoutesWithoutTable)
    result = assert_same_evaluation(router, env)
    if routing == "layered":
        # Tasks 1, 3, 4, 6, 8 and 9 take a masked action: no prediction, worst reward.
        assert result["per_task_accuracy"][1] == result["per_task_accuracy"][3] == 0.0
    else:
        assert result["routing_map"][1] == [10, -1, -1]  # stopped at once
        assert result["routing_map"][2] == [5, 10, -1]


def test_a_masked_action_under_raise_raises_in_both_paths():
    env = RoutingEnv("digits-mtl", split="test", hidden_dim=32, invalid_action="raise")
    router = FixedRouter(fixed_routes(env.network.extra_action))
    for batched in (False, True):
        with pytest.raises(ValueError, match="masked"):
            evaluate_router(router, env, batched=batched)
    assert router.greedy is False


def test_exploration_squashing_changes_nothing_without_training():
    train_env, _ = envs("layered")
    test_env = RoutingEnv("digits-mtl", split="test", network=train_env.network, squash_kappa=2.0)
    agent = make_agent("q", test_env, seed=0, epsilon=0.5)
    train(agent, train_env, 320, seed=0, progress=False)
    assert_same_evaluation(agent, test_env)


def test_sb3_routers():
    pytest.importorskip("stable_baselines3")
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    from agents.sb3 import SB3Router

    for routing in ("layered", "recurrent"):
        train_env = RoutingEnv("digits-mtl", routing=routing, hidden_dim=32)
        test_env = RoutingEnv("digits-mtl", split="test", network=train_env.network)
        for algorithm in (PPO, MaskablePPO):
            model = algorithm("MultiInputPolicy", train_env, n_steps=64, batch_size=32, seed=0)
            model.learn(128)
            router = SB3Router(model)
            assert router.masked == (algorithm is MaskablePPO)
            assert_same_evaluation(router, test_env, episodes=60)


def test_table_routers_route_from_their_table(monkeypatch):
    _, test_env = envs("layered")
    agent = make_agent("wpl", test_env, seed=0)
    # The table path never asks the router to act.
    monkeypatch.setattr(agent, "act_batch", None)
    monkeypatch.setattr(agent, "act", None)
    monkeypatch.setattr(agents.evaluation, "run_episode", None)
    assert evaluate_router(agent, test_env)["episodes"] == test_env.num_samples


@pytest.mark.parametrize("name", ["wpl", "q", "reinforce", "advantage", "wolf-phc"])
def test_greedy_tables_are_the_greedy_actions(name):
    train_env, test_env = envs("layered")
    agent = make_agent(name, test_env, seed=0)
    train(agent, train_env, 320, seed=0, progress=False)
    network = test_env.network
    masks = np.stack([network.action_mask(d) for d in range(network.max_depth)])
    table = agent.greedy_table(10, masks.astype(bool))
    agent.greedy = True
    acted = [
        [agent.act({"task": t, "depth": d}, {"action_mask": masks[d]}) for d in range(3)]
        for t in range(10)
    ]
    np.testing.assert_array_equal(table, acted)
    # States outside the tables: no table (acting there raises, as one by one).
    assert agent.greedy_table(11, masks.astype(bool)) is None


class Observed(gym.ObservationWrapper):
    """Changes what the router sees."""

    def observation(self, observation):
        return {**observation, "activation": observation["activation"] * 0}


def test_what_prevents_batching_falls_back_to_one_by_one():
    train_env, test_env = envs("layered")
    wpl = make_agent("wpl", test_env, seed=0)
    assert batch_obstacle(wpl, gym.make("routing_env/DigitsMTL-v0", split="test")) is None
    assert "greedy_batchable" in batch_obstacle(make_agent("random", test_env), test_env)
    dispatched = make_agent("dispatched-wpl", test_env, seed=0)
    assert "greedy_batchable" in batch_obstacle(dispatched, test_env)
    np.testing.assert_equal(
        evaluate_router(dispatched, test_env, 50), evaluate_router(dispatched, test_env, 50, False)
    )
    assert "Observed" in batch_obstacle(wpl, Observed(test_env))
    training = RoutingEnv("digits-mtl", split="test", network=train_env.network, train_modules=True)
    assert "trains its modules" in batch_obstacle(wpl, training)
    test_env.network.train()
    assert "training mode" in batch_obstacle(wpl, test_env)
    test_env.network.eval()
    assert batch_obstacle(wpl, test_env) is None


def test_batched_evaluation_leaves_network_window_env_and_router_alone():
    train_env, test_env = envs("collaboration")
    agent = make_agent("reinforce-approx", test_env, seed=0)
    train(agent, train_env, 320, seed=0, progress=False)
    network = test_env.network
    parameters = [p.detach().clone() for p in network.parameters()]
    window = copy.deepcopy(network.selection_history.state_dict())
    rng = copy.deepcopy(agent.rng.bit_generator.state)
    updates = network.num_updates
    evaluate_router(agent, test_env)
    assert all(torch.equal(p, q) for p, q in zip(network.parameters(), parameters, strict=True))
    np.testing.assert_equal(network.selection_history.state_dict(), window)
    assert agent.rng.bit_generator.state == rng and agent.greedy is False
    assert network.num_updates == updates
    # The test env itself still routes from the start of its split.
    assert run_episode(agent, test_env).final_info["sample_index"] == 0


def test_route_statistics_of_infos_match_the_batched_columns():
    _, test_env = envs("recurrent")
    router = FixedRouter(fixed_routes(test_env.network.extra_action))
    indices = evaluation_indices(test_env.num_samples, 40).tolist()
    routes = [run_episode(router, test_env, options={"sample_index": i}) for i in indices]
    stats = route_statistics(
        [episode.final_info for episode in routes],
        [sum(episode.rewards) for episode in routes],
        [episode.observations[0]["task"] for episode in routes],
        num_tasks=10,
        max_depth=3,
        num_actions=11,
        recurrent=True,
    )
    batched = evaluate_router(router, test_env, 40)
    assert stats.keys() == batched.keys()
    for key, value in stats.items():
        np.testing.assert_allclose(batched[key], value, rtol=1e-6, err_msg=key)
    empty = route_statistics([], [], [], num_tasks=2, max_depth=3, num_actions=4, recurrent=False)
    assert empty["episodes"] == 0 and np.isnan(empty["accuracy"])
