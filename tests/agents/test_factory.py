"""Every agent and architecture trains through agents.train and survives save/load."""

import numpy as np
import pytest

import agents
from agents.factory import AGENT_NAMES, make_agent
from agents.training import evaluate, run_episode, train
from routing_env.env import RoutingEnv

SUITES = {
    "digits-mtl": {},
    "synthetic-mtl": {"dataset_options": {"samples_per_task": 200, "test_samples_per_task": 20}},
}


def envs(suite: str) -> tuple[RoutingEnv, RoutingEnv]:
    env = RoutingEnv(suite, **SUITES[suite])
    test = RoutingEnv(suite, split="test", network=env.network, **SUITES[suite])
    return env, test


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("name", AGENT_NAMES)
def test_agent_trains_and_round_trips(name, suite, tmp_path):
    env, test = envs(suite)
    agent = make_agent(name, env, seed=3)
    history = train(agent, env, 40, eval_env=test, eval_every=20, eval_episodes=20, progress=False)
    assert history["episode"] == [20, 40]
    assert len(history["test_accuracy"]) == 2
    assert 0.0 <= history["final"]["test_accuracy"] <= 1.0
    path = tmp_path / "agent.pt"
    agents.save(agent, path)
    loaded = agents.load(path)
    assert type(loaded) is type(agent)
    # Identical actions from here on: same learned state and same random stream.
    obs, info = env.reset()
    for _ in range(10):
        assert loaded.act(obs, info) == agent.act(obs, info)
        obs, info = env.reset()


def test_unknown_agent_lists_the_known_ones():
    env, _ = envs("digits-mtl")
    with pytest.raises(ValueError, match="known agents: wpl"):
        make_agent("sarsa", env)


def test_evaluate_is_greedy_and_restores_mode():
    env, test = envs("digits-mtl")
    agent = make_agent("wpl", env, seed=0)
    first = evaluate(agent, test, episodes=50)
    second = evaluate(agent, test, episodes=50)
    assert agent.greedy is False
    # Greedy routes of an unchanged agent on frozen modules give the same outcome twice.
    assert first["accuracy"] == second["accuracy"]
    assert first["routing_map"] == second["routing_map"]


def test_route_statistics_on_fixed_routes():
    env, test = envs("digits-mtl")
    agent = make_agent("fixed-per-task", env)
    result = evaluate(agent, test)
    assert result["episodes"] == test.num_samples
    assert result["routing_map"] == [[t, t, t] for t in range(10)]
    assert result["modules_used"] == 30
    # Every task is equally frequent in the test split: log(10) nats per depth.
    assert result["route_entropy"] == pytest.approx(np.log(10), abs=1e-6)


def test_run_episode_returns_match_rewards():
    env, _ = envs("digits-mtl")
    agent = make_agent("random", env, seed=1)
    episode = run_episode(agent, env, seed=0)
    assert len(episode) == 3
    assert episode.final_info["path"].tolist() == episode.actions
    assert episode.returns()[0] == pytest.approx(sum(episode.rewards))


def test_default_num_envs_is_the_vector_env_for_routers_that_route_batches():
    from agents import default_num_envs, make_agent
    from routing_env import RoutingEnv
    from routing_env.settings import TRAIN_DEFAULTS

    env = RoutingEnv("synthetic-mtl")
    for name in ("wpl", "q", "single-wpl", "reinforce-approx", "per-task-q-approx", "random"):
        assert default_num_envs(name) == TRAIN_DEFAULTS["num_envs"] == 256, name
        assert make_agent(name, env).routes_in_batches, name
    for name in ("dispatched-wpl", "kmeans-q", "agglomerative-reinforce"):
        assert default_num_envs(name) == 1, name
        assert not make_agent(name, env).routes_in_batches, name
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        default_num_envs("nope")
