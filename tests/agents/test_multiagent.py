"""The multi-agent training loop, evaluation, analysis and plots on the routing game."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import agents.multiagent
from agents.fixed import FixedRouter, RandomRouter
from agents.multiagent import (
    evaluate_multiagent,
    make_population,
    path_overlap,
    policy_table,
    run_round,
    train_multiagent,
)
from agents.q_learning import QLearning
from agents.reinforce_approx import ReinforceApprox
from agents.wpl import WPL
from routing_env import routing_game_v0
from routing_env.experiments.multiagent_plots import plot_multiagent

MIXED = ["wpl"] * 5 + ["q"] * 5


def games(**kwargs):
    train = routing_game_v0.parallel_env(reward="neg_loss", **kwargs)
    test = routing_game_v0.parallel_env(reward="neg_loss", split="test", network=train.network)
    return train, test


def params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


def test_make_population_names_seeds_and_errors():
    game, _ = games()
    population = make_population(MIXED, game, seed=3, options={"wpl": {"lr": 0.5}})
    assert list(population) == game.possible_agents
    assert all(isinstance(population[f"router_{t}"], WPL) for t in range(5))
    assert all(isinstance(population[f"router_{t}"], QLearning) for t in range(5, 10))
    assert population["router_0"].lr == 0.5 and population["router_0"].pi.shape == (10, 3, 11)
    assert len({agent.seed for agent in population.values()}) == 10
    same = make_population("reinforce", game, seed=3)
    assert len(same) == 10 and len({id(a) for a in same.values()}) == 10
    by_name = make_population({a: "q" for a in game.possible_agents}, game)
    assert all(isinstance(a, QLearning) for a in by_name.values())
    with pytest.raises(ValueError, match="routers"):
        make_population(["wpl"] * 3, game)
    with pytest.raises(ValueError, match="unknown agent"):
        make_population("nope", game)


def test_run_round_gives_each_agent_its_own_episode():
    game, _ = games()
    routes = {t: (t, (t + 1) % 10, (t + 2) % 10) for t in range(10)}
    policies = {agent: FixedRouter(routes) for agent in game.possible_agents}
    episodes = run_round(policies, game, seed=0)
    assert list(episodes) == game.possible_agents
    for t, episode in enumerate(episodes.values()):
        assert episode.actions == list(routes[t])
        assert [obs["task"] for obs in episode.observations] == [t, t, t]
        assert [obs["depth"] for obs in episode.observations] == [0, 1, 2]
        assert all("action_mask" in info for info in episode.infos)
        assert episode.final_info["path"].tolist() == list(routes[t])
        assert sum(episode.rewards) == pytest.approx(episode.final_info["final_reward"])


def test_mixed_population_trains_through_train_multiagent(tmp_path):
    game, test = games()
    population = make_population(MIXED, game, seed=0, options={"wpl": {"lr": 0.5}})
    history = train_multiagent(
        population,
        game,
        episodes=60,
        eval_env=test,
        eval_every=20,
        eval_rounds=10,
        seed=0,
        progress=False,
        out_dir=tmp_path,
    )
    agents = game.possible_agents
    assert history["episode"] == [20, 40, 60] and history["routes"] == [200, 400, 600]
    assert history["algorithms"]["router_0"] == "WPL"
    assert history["algorithms"]["router_9"] == "QLearning"
    for key in ("mean_reward", "train_accuracy", "test_accuracy"):
        assert set(history[key]) == set(agents)
        assert all(len(values) == 3 for values in history[key].values())
    assert all(r < 0 for values in history["mean_reward"].values() for r in values)  # -loss
    assert len(history["route_entropy"]) == len(history["train_route_entropy"]) == 3
    assert np.asarray(history["routing_map"][-1]).shape == (10, 3)
    overlap = np.asarray(history["path_overlap"][-1])
    assert overlap.shape == (10, 10) and np.allclose(np.diag(overlap), 1.0)
    assert np.allclose(overlap, overlap.T)
    # Snapshots of every tabular agent's policy for its own task, a distribution per depth.
    for agent in agents:
        snapshots = np.asarray(history["policy"][agent])
        assert snapshots.shape == (3, 3, 11)
        assert np.allclose(snapshots.sum(axis=2), 1.0)
    # Everyone learned from its own routes only: WPL moved its own task's row, not others'.
    wpl = population["router_2"]
    assert not np.allclose(wpl.pi[2], 1 / 11)
    assert np.allclose(np.delete(wpl.pi, 2, axis=0), 1 / 11)
    q = population["router_7"]
    assert np.any(q.q[7] != 0) and np.all(np.delete(q.q, 7, axis=0) == 0)
    assert game.network.num_updates == 600 // 16
    final = history["final"]
    assert final["test_accuracy"] == pytest.approx(
        np.mean(list(final["per_agent_accuracy"].values()))
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["episodes"] == 60 and "history" in saved


def test_training_is_deterministic_and_accepts_the_aec_form():
    def run(form):
        game = form(reward="neg_loss")
        population = make_population(["wpl", "reinforce"] * 5, game, seed=1)
        history = train_multiagent(population, game, episodes=30, seed=4, progress=False)
        return history, params(game.unwrapped.network)

    parallel_history, parallel_params = run(routing_game_v0.parallel_env)
    aec_history, aec_params = run(routing_game_v0.env)
    again, again_params = run(routing_game_v0.parallel_env)
    assert torch.equal(parallel_params, again_params) and torch.equal(parallel_params, aec_params)
    for key in ("mean_reward", "policy"):
        assert parallel_history[key] == again[key] == aec_history[key]
    assert "test_accuracy" not in parallel_history
    assert set(parallel_history["final"]) == {"train_accuracy", "train_route_entropy"}


def test_non_tabular_agents_plug_in_without_policy_snapshots():
    game, test = games()
    population = make_population(["wpl"] * 9 + ["reinforce-approx"], game, seed=0)
    assert isinstance(population["router_9"], ReinforceApprox)
    history = train_multiagent(
        population, game, 10, eval_env=test, eval_every=5, eval_rounds=3, progress=False
    )
    assert "router_9" not in history["policy"] and len(history["policy"]["router_0"]) == 2
    assert len(history["test_accuracy"]["router_9"]) == 2


def test_evaluate_multiagent_is_greedy_repeatable_and_leaves_the_network_alone():
    game, test = games()
    population = make_population("wpl", game, seed=0)
    population["router_0"].pi[0, :, :] = 0.0
    population["router_0"].pi[0, :, 4] = 1.0  # router_0 always takes module 4
    before = params(game.network)
    first = evaluate_multiagent(population, test, rounds=25)
    second = evaluate_multiagent(population, test, rounds=25)
    assert first == second
    assert torch.equal(before, params(game.network))
    assert not any(agent.greedy for agent in population.values())  # restored
    assert first["episodes"] == 250
    assert first["greedy_paths"]["router_0"] == [4, 4, 4]
    assert first["routing_map"][0] == [4, 4, 4]
    # Greedy WPL on a uniform table takes the lowest index: every other task routes 0-0-0.
    assert all(first["greedy_paths"][f"router_{t}"] == [0, 0, 0] for t in range(1, 10))
    overlap = np.asarray(first["path_overlap"])
    assert overlap[1, 2] == 1.0 and overlap[0, 1] == 0.0
    assert set(first["per_agent_accuracy"]) == set(game.possible_agents)
    everything = evaluate_multiagent(population, test)
    assert everything["episodes"] == len(test.dataset.test.task)
    with pytest.raises(ValueError, match="one agent per router"):
        evaluate_multiagent({"router_0": population["router_0"]}, test)


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_batched_evaluation_equals_playing_the_rounds(routing, monkeypatch):
    game = routing_game_v0.parallel_env(routing=routing, collaboration_reward=0.3)
    test = routing_game_v0.parallel_env(
        split="test", network=game.network, collaboration_reward=0.3
    )
    population = make_population(["wpl"] * 5 + ["q-approx"] * 5, game, seed=1)
    train_multiagent(population, game, episodes=40, seed=1, progress=False)
    reference = evaluate_multiagent(population, test, rounds=30, batched=False)
    played = []
    monkeypatch.setattr(agents.multiagent, "run_round", lambda *a, **k: played.append(1))
    batched = evaluate_multiagent(population, test, rounds=30)
    assert not played  # no round was played
    assert batched.keys() == reference.keys()
    for key in ("accuracy", "per_task_accuracy", "route_entropy", "modules_used", "routing_map",
                "episodes", "per_agent_accuracy", "greedy_paths", "path_overlap"):  # fmt: skip
        assert batched[key] == reference[key], key
    for key in ("mean_reward", "mean_loss"):
        assert batched[key] == pytest.approx(reference[key], rel=1e-6)
    for key in ("per_agent_reward", "per_agent_loss"):
        assert batched[key] == pytest.approx(reference[key], rel=1e-6)
    # The AEC form is batched as well.
    assert evaluate_multiagent(population, routing_game_v0.env(
        split="test", network=game.network, collaboration_reward=0.3), rounds=30) == batched


def test_evaluation_plays_the_rounds_where_batching_would_differ(monkeypatch):
    game, test = games()
    population = make_population("wpl", game, seed=0)
    training = routing_game_v0.parallel_env(split="test", network=game.network, train_modules=True)
    mixed = {**population, "router_3": RandomRouter(seed=0)}
    played = []
    original = agents.multiagent.run_round
    monkeypatch.setattr(
        agents.multiagent, "run_round", lambda *a, **k: played.append(1) or original(*a, **k)
    )
    for policies, env in ((population, training), (mixed, test)):
        played.clear()
        evaluate_multiagent(policies, env, rounds=3)
        assert len(played) == 3


def test_path_overlap_counts_shared_modules():
    extra = 10
    layered = path_overlap([[1, 2, 3], [1, 5, 3], [4, 5, 6], [extra, 2, 3]], extra)
    assert layered[0, 1] == pytest.approx(2 / 3)
    assert layered[1, 2] == pytest.approx(1 / 3)
    assert layered[0, 2] == 0.0
    assert layered[0, 3] == pytest.approx(2 / 3)  # PASS is not a module
    assert np.allclose(np.diag(layered), 1.0) and np.allclose(layered, layered.T)
    # Same module at different depths is a different module in layered routing only.
    assert path_overlap([[1, 2], [2, 1]], extra)[0, 1] == 0.0
    assert path_overlap([[1, 2], [2, 1]], extra, recurrent=True)[0, 1] == 1.0
    assert path_overlap([[1, extra], [1, 3, extra]], extra, recurrent=True)[0, 1] == 0.5


def test_policy_table_only_for_tabular_agents():
    masks = np.ones((3, 11), dtype=np.int8)
    masks[2, 10] = 0
    table = policy_table(WPL(10, 3, 11), 4, masks)
    assert table.shape == (3, 11) and table[2, 10] == 0.0
    assert np.allclose(table.sum(axis=1), 1.0)
    assert policy_table(FixedRouter({0: (0, 0, 0)}), 0, masks) is None
    approx = ReinforceApprox(activation_dim=64, num_tasks=10, max_depth=3, num_actions=11)
    assert policy_table(approx, 0, masks) is None


def test_plots_are_written(tmp_path):
    game, test = games()
    population = make_population(MIXED, game, seed=0)
    history = train_multiagent(
        population, game, 12, eval_env=test, eval_every=4, eval_rounds=3, progress=False
    )
    paths = plot_multiagent(history, tmp_path, depth=1, title="mixed")
    names = sorted(path.rsplit("/", 1)[-1] for path in paths)
    assert names == [
        "accuracy.png",
        "module_probability.png",
        "path_overlap.png",
        "policy_over_time.png",
        "routing_map.png",
        "selection_entropy.png",
    ]
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
