import warnings

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

from routing_env import routing_game_v0
from routing_env.datasets import MultiTaskDataset
from routing_env.datasets.base import Split
from routing_env.env import RoutingEnv

SYNTHETIC = {
    "dataset": "synthetic-mtl",
    "dataset_options": {"samples_per_task": 100, "test_samples_per_task": 20},
}
GAMES = [
    pytest.param({"dataset": "digits-mtl"}, id="digits-layered"),
    pytest.param({"dataset": "digits-mtl", "routing": "recurrent"}, id="digits-recurrent"),
    pytest.param({**SYNTHETIC, "collaboration_reward": 0.5}, id="synthetic-collaboration"),
    pytest.param({**SYNTHETIC, "split": "test"}, id="synthetic-test-split"),
]


def params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


def two_task_dataset() -> MultiTaskDataset:
    """Task 0: sign of feature 0; task 1: sign of feature 1 (8 Gaussian features)."""
    rng = np.random.default_rng(0)

    def split(per_task: int) -> Split:
        x = rng.normal(size=(2 * per_task, 8)).astype(np.float32)
        task = np.repeat(np.arange(2), per_task)
        y = (x[np.arange(2 * per_task), task] > 0).astype(np.int64)
        return Split(x=x, task=task, y=y)

    return MultiTaskDataset(
        train=split(200), test=split(50), num_tasks=2, num_classes=2, name="two-signs"
    )


def play(game, routes, rounds, seed=0):
    """Play ``rounds`` rounds with fixed routes (agent -> actions); return the sample indices."""
    samples = []
    for number in range(rounds):
        obs, infos = game.reset(seed=seed if number == 0 else None)
        samples.append({agent: info["sample_index"] for agent, info in infos.items()})
        while game.agents:
            depth = obs[game.agents[0]]["depth"]
            obs, *_ = game.step({agent: routes[agent][depth] for agent in game.agents})
    return samples


def mean_final_reward(game, agent, route):
    """Mean final reward of ``agent`` on every test sample of its task, others on ``route``."""
    rewards = []
    for index in game.task_samples[agent]:
        obs, _ = game.reset(options={"sample_indices": {agent: int(index)}})
        while game.agents:
            obs, reward, *_ = game.step({a: route[obs[a]["depth"]] for a in game.agents})
        rewards.append(reward[agent])
    return float(np.mean(rewards))


# ---------------------------------------------------------------------- PettingZoo tests


@pytest.mark.parametrize("kwargs", GAMES)
def test_pettingzoo_api_and_seed_tests_pass(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo's advisory warnings (Dict obs, inf bounds)
        api_test(routing_game_v0.env(**kwargs), num_cycles=200)
        parallel_api_test(routing_game_v0.parallel_env(**kwargs), num_cycles=200)
        seed_test(lambda: routing_game_v0.env(**kwargs), num_cycles=50)
        parallel_seed_test(lambda: routing_game_v0.parallel_env(**kwargs), num_cycles=50)


def test_constructors_metadata_and_spaces():
    penv = routing_game_v0.parallel_env()
    aenv = routing_game_v0.env()
    raw = routing_game_v0.raw_env()
    assert isinstance(penv, ParallelEnv) and isinstance(penv, routing_game_v0.RoutingGame)
    assert isinstance(aenv, AECEnv) and isinstance(raw, AECEnv)
    assert isinstance(aenv.unwrapped, routing_game_v0.RoutingGame)
    assert penv.metadata["name"] == "routing_game_v0"
    assert penv.metadata["render_modes"] == ["ansi"]
    assert penv.metadata["is_parallelizable"] is True
    assert penv.possible_agents == [f"router_{t}" for t in range(10)]
    single = RoutingEnv("digits-mtl")
    for agent in penv.possible_agents:
        assert penv.observation_space(agent) == single.observation_space
        assert penv.action_space(agent) == spaces.Discrete(single.network.num_modules + 1)
        assert penv.observation_space(agent) is penv.observation_space(agent)
    assert penv.observation_space("router_0") is not penv.observation_space("router_1")
    with pytest.raises(ValueError, match="render_mode"):
        routing_game_v0.parallel_env(render_mode="human")
    with pytest.raises(ValueError, match="reward"):
        routing_game_v0.parallel_env(reward="accuracy")  # RoutingEnv's validation applies


def test_each_agent_routes_its_own_task_and_is_paid_its_own_outcome():
    game = routing_game_v0.parallel_env(reward="neg_loss")
    obs, infos = game.reset(seed=3)
    assert game.agents == game.possible_agents
    for t, agent in enumerate(game.agents):
        assert obs[agent]["task"] == t and obs[agent]["depth"] == 0
        assert "task" not in infos[agent] and infos[agent]["route_done"] is False
        assert game._task[infos[agent]["sample_index"]] == t
        assert infos[agent]["action_mask"].tolist() == game.network.action_mask(0).tolist()
    actions = {agent: t for t, agent in enumerate(game.agents)}
    for step in range(3):
        obs, rewards, terminations, truncations, infos = game.step(actions)
        assert set(rewards) == set(terminations) == set(truncations) == set(infos)
        assert not any(truncations.values())
        if step < 2:
            assert game.agents == game.possible_agents
            assert all(reward == 0.0 for reward in rewards.values())
    assert game.agents == []
    for t, agent in enumerate(game.possible_agents):
        info = infos[agent]
        assert terminations[agent]
        assert info["path"].tolist() == [t, t, t] and info["route_done"]
        assert info["final_reward"] == pytest.approx(-info["loss"])
        assert rewards[agent] == pytest.approx(-info["loss"])
        assert info["correct"] == (info["prediction"] == info["label"])
        assert not info["invalid_action"]
        assert obs[agent]["depth"] == 3
        assert obs[agent]["activation"][:2].tolist() == pytest.approx(
            game.network.outputs_sample(obs[agent]["activation"][:2], t).tolist()
        )
    with pytest.raises(RuntimeError, match="reset"):
        game.step(actions)


def test_aec_and_parallel_forms_play_the_same_round():
    penv = routing_game_v0.parallel_env()
    aenv = routing_game_v0.env()
    pobs, _ = penv.reset(seed=5)
    aenv.reset(seed=5)
    route = (2, 4, 1)
    final = {}
    for depth in range(3):
        _, prewards, *_ = penv.step(dict.fromkeys(penv.agents, route[depth]))
    for agent in aenv.agent_iter():
        obs, reward, terminated, truncated, info = aenv.last()
        if terminated:
            final[agent] = reward
            aenv.step(None)
        else:
            aenv.step(route[obs["depth"]])
    assert final == pytest.approx(prewards)


def test_recurrent_agent_that_stops_early_stays_until_the_round_ends():
    """The default fixed agent set: a finished agent stays, is paid 0 and keeps its final
    observation and info, its actions ignored; everyone terminates on the last step."""
    game = routing_game_v0.parallel_env(routing="recurrent", max_depth=3)
    stop = game.network.extra_action
    game.reset(seed=0)
    actions = {agent: (stop if agent == "router_0" else 1) for agent in game.agents}
    obs, rewards, terminations, _, infos = game.step(actions)
    assert not any(terminations.values()) and game.agents == game.possible_agents
    first_end = infos["router_0"]
    assert first_end["route_done"] and first_end["path"].tolist() == [stop, -1, -1]
    assert first_end["action_mask"].tolist() == [1] * 11  # drawable, and ignored
    final_obs, final_reward = obs["router_0"], rewards["router_0"]
    assert final_reward == first_end["final_reward"]
    # router_0 may send anything (or nothing); it is ignored and paid 0.
    obs, rewards, terminations, _, infos = game.step({**dict.fromkeys(game.agents, 2)})
    assert rewards["router_0"] == 0.0 and not any(terminations.values())
    np.testing.assert_array_equal(obs["router_0"]["activation"], final_obs["activation"])
    np.testing.assert_array_equal(infos["router_0"]["path"], first_end["path"])
    others = {agent: 3 for agent in game.agents if agent != "router_0"}
    obs, rewards, terminations, _, infos = game.step(others)
    assert set(terminations) == set(game.possible_agents) and all(terminations.values())
    assert game.agents == [] and rewards["router_0"] == 0.0
    assert infos["router_1"]["path"].tolist() == [1, 2, 3]
    assert game.state().shape == game.state_space.shape


def test_recurrent_agents_leave_early_when_asked():
    game = routing_game_v0.parallel_env(routing="recurrent", max_depth=3, leave_early=True)
    stop = game.network.extra_action
    game.reset(seed=0)
    actions = {agent: (stop if agent == "router_0" else 1) for agent in game.agents}
    obs, rewards, terminations, _, infos = game.step(actions)
    assert terminations["router_0"] and infos["router_0"]["path"].tolist() == [stop, -1, -1]
    assert not any(terminations[a] for a in game.possible_agents[1:])
    assert "router_0" not in game.agents and len(game.agents) == 9
    # A finished agent's action is ignored; the others continue.
    obs, rewards, terminations, _, infos = game.step({**dict.fromkeys(game.agents, 2)})
    assert set(rewards) == set(game.possible_agents[1:])
    obs, rewards, terminations, _, infos = game.step(dict.fromkeys(game.agents, 3))
    assert all(terminations.values()) and game.agents == []
    assert infos["router_1"]["path"].tolist() == [1, 2, 3]


def test_invalid_actions_end_or_raise():
    game = routing_game_v0.parallel_env()  # layered digits: PASS is masked at the last depth
    extra = game.network.extra_action
    game.reset(seed=0)
    game.step(dict.fromkeys(game.agents, 0))
    game.step(dict.fromkeys(game.agents, 0))
    actions = {**dict.fromkeys(game.agents, 0), "router_4": extra}
    pending = game.network.pending_routes
    _, rewards, terminations, _, infos = game.step(actions)
    assert infos["router_4"]["invalid_action"] and rewards["router_4"] == -1.0
    assert infos["router_4"]["loss"] == -1.0 and infos["router_4"]["prediction"] == -1
    assert not infos["router_3"]["invalid_action"]
    assert game.network.pending_routes == pending + 9  # no module training on the invalid one

    strict = routing_game_v0.parallel_env(invalid_action="raise")
    strict.reset(seed=0)
    strict.step(dict.fromkeys(strict.agents, 0))
    strict.step(dict.fromkeys(strict.agents, 0))
    with pytest.raises(ValueError, match=r"router_4: action 10 is masked at depth 2"):
        strict.step({**dict.fromkeys(strict.agents, 0), "router_4": extra})
    assert len(strict.agents) == 10  # nothing happened: the step can be retried
    strict.step(dict.fromkeys(strict.agents, 0))
    assert strict.agents == []


def test_bad_actions_raise_clear_errors():
    game = routing_game_v0.parallel_env()
    game.reset(seed=0)
    with pytest.raises(ValueError, match="no action for router_3"):
        game.step({a: 0 for a in game.agents if a != "router_3"})
    with pytest.raises(ValueError, match="outside the action space"):
        game.step({**dict.fromkeys(game.agents, 0), "router_1": 11})
    with pytest.raises(ValueError, match="not agents of this game"):
        game.step({**dict.fromkeys(game.agents, 0), "player_0": 0})
    with pytest.raises(ValueError, match="belongs to task 0"):
        game.reset(options={"sample_indices": {"router_1": int(game.task_samples["router_0"][0])}})
    with pytest.raises(RuntimeError, match="before reset"):
        routing_game_v0.parallel_env().step({})


def test_modules_train_on_all_agents_routes_together():
    game = routing_game_v0.parallel_env(module_batch_size=16)
    routes = {a: (0, 0, 0) for a in game.possible_agents}
    play(game, routes, rounds=1, seed=0)
    assert game.network.pending_routes == 10 and game.network.num_updates == 0
    play(game, routes, rounds=1, seed=None)
    assert game.network.pending_routes == 4 and game.network.num_updates == 1

    frozen = routing_game_v0.parallel_env(train_modules=False)
    before = params(frozen.network)
    play(frozen, {a: (0, 0, 0) for a in frozen.possible_agents}, rounds=5)
    assert frozen.network.pending_routes == 0
    assert torch.equal(before, params(frozen.network))


def test_collaboration_reward_counts_every_agents_choices():
    game = routing_game_v0.parallel_env(collaboration_reward=0.6, reward="neg_loss")
    routes = {a: (0, 1, 2) if a != "router_9" else (3, 1, 2) for a in game.possible_agents}
    play(game, routes, rounds=1, seed=0)  # history: layer 0 holds nine 0s and one 3
    game.reset()
    _, rewards, *_ = game.step({a: routes[a][0] for a in game.agents})
    assert rewards["router_0"] == pytest.approx(0.6 / 3 * 0.9)
    assert rewards["router_9"] == pytest.approx(0.6 / 3 * 0.1)


def test_seed_fixes_samples_and_owned_network():
    first, second = routing_game_v0.parallel_env(), routing_game_v0.parallel_env()
    _, infos_1 = first.reset(seed=11)
    _, infos_2 = second.reset(seed=11)
    assert torch.equal(params(first.network), params(second.network))
    assert {a: i["sample_index"] for a, i in infos_1.items()} == {
        a: i["sample_index"] for a, i in infos_2.items()
    }
    other = routing_game_v0.parallel_env()
    other.reset(seed=12)
    assert not torch.equal(params(first.network), params(other.network))
    routes = {a: (1, 2, 3) for a in first.possible_agents}
    assert play(first, routes, rounds=4, seed=11) == play(second, routes, rounds=4, seed=11)
    assert torch.equal(params(first.network), params(second.network))

    # A shared network is never re-initialised by reset(seed=).
    shared = routing_game_v0.parallel_env(network=first.network, split="test")
    before = params(first.network)
    shared.reset(seed=99)
    assert torch.equal(before, params(first.network))


def test_test_split_shares_the_network_and_routes_in_order():
    train = routing_game_v0.parallel_env()
    test = routing_game_v0.parallel_env(split="test", network=train.network)
    assert test.network is train.network and not test.train_modules
    assert test.sample_order == "sequential"
    for round_number in range(2):
        _, infos = test.reset()
        for agent, info in infos.items():
            assert info["sample_index"] == test.task_samples[agent][round_number]
    with pytest.raises(ValueError, match="network= was given"):
        routing_game_v0.parallel_env(network=train.network, num_modules=3)


def test_render_ansi_shows_every_agents_route():
    game = routing_game_v0.parallel_env(render_mode="ansi")
    game.reset(seed=0)
    for _ in range(3):
        game.step(dict.fromkeys(game.agents, 7))
    lines = game.render().splitlines()
    assert len(lines) == 10
    assert lines[2].startswith("router_2: sample") and "L0:m7 -> L1:m7 -> L2:m7" in lines[2]
    assert ("correct" in lines[2]) or ("wrong" in lines[2])
    with pytest.warns(UserWarning, match="render_mode"):
        assert routing_game_v0.parallel_env().render() is None


# ---------------------------------------------------------------------- it is a game


@pytest.mark.parametrize("train_modules", [True, False])
def test_another_agents_policy_changes_my_return_only_when_modules_train(train_modules):
    """Agent A always routes (0, 0, 0). After K rounds in which agent B routes (1, 1, 1)
    (disjoint modules) or (0, 0, 0) (A's modules), A's mean final reward on its test samples
    differs when the modules train on both agents' routes, and is identical when they don't."""
    dataset = two_task_dataset()
    network_keywords = {
        "num_modules": 2,
        "max_depth": 3,
        "hidden_dim": 16,
        "module_lr": 0.2,
        "module_batch_size": 4,
    }
    results, samples = {}, {}
    for b_route in [(1, 1, 1), (0, 0, 0)]:
        game = routing_game_v0.parallel_env(
            dataset=dataset, reward="neg_loss", train_modules=train_modules, **network_keywords
        )
        routes = {"router_0": (0, 0, 0), "router_1": b_route}
        samples[b_route] = play(game, routes, rounds=150, seed=0)
        test = routing_game_v0.parallel_env(
            dataset=dataset, split="test", reward="neg_loss", network=game.network
        )
        results[b_route] = mean_final_reward(test, "router_0", (0, 0, 0))
    untrained = routing_game_v0.parallel_env(
        dataset=dataset, reward="neg_loss", train_modules=False, **network_keywords
    )
    untrained.reset(seed=0)
    test = routing_game_v0.parallel_env(
        dataset=dataset, split="test", reward="neg_loss", network=untrained.network
    )
    before = mean_final_reward(test, "router_0", (0, 0, 0))

    # A saw the same samples in both runs: only B's policy differed.
    seen_by_a = {route: [s["router_0"] for s in drawn] for route, drawn in samples.items()}
    assert seen_by_a[(1, 1, 1)] == seen_by_a[(0, 0, 0)]
    if train_modules:
        assert results[(1, 1, 1)] != before  # A's own routes trained its modules
        assert abs(results[(0, 0, 0)] - results[(1, 1, 1)]) > 0.1
    else:
        assert results[(1, 1, 1)] == results[(0, 0, 0)] == before
