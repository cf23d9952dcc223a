import math

import numpy as np
import pytest
import torch

from agents import FixedRouter, RandomRouter, make_agent
from agents.training import evaluate, run_episode
from routing_env import RoutingEnv
from routing_env.experiments.nonstationarity import measure_nonstationarity
from routing_env.metrics import (
    ModuleDriftRecorder,
    ReturnDriftProbe,
    map_stability,
    task_partition_ari,
)

SMALL_SYNTHETIC = {"samples_per_task": 100, "test_samples_per_task": 20}


def synthetic_env(**kwargs) -> RoutingEnv:
    return RoutingEnv("synthetic-mtl", dataset_options=SMALL_SYNTHETIC, module_lr=0.3, **kwargs)


# ---------------------------------------------------------------------- return drift


@pytest.mark.parametrize("seed", [0, 1])
def test_return_drift_is_exactly_zero_with_frozen_modules(seed):
    # Seed 1 matters: a fresh network is built from seed 0 and re-drawn from the run's seed at
    # its first reset, which must come before the first measurement.
    env = synthetic_env(train_modules=False)
    agent = make_agent("wpl", env, seed=seed, lr=0.5)
    history = measure_nonstationarity(agent, env, routes=1200, every=300, seed=seed)
    assert history["routes"] == [0, 300, 600, 900, 1200]
    assert history["return_drift"] == [0.0] * 5
    assert history["module_drift"] == [0.0] * 5
    assert history["module_updates"] == 0
    assert history["summary"]["return_drift"] == 0.0
    # The agent did learn: the snapshots differ, only their values under fixed modules do not.
    assert not np.allclose(agent.pi, 1.0 / agent.num_actions)


def test_return_drift_is_measurably_nonzero_with_training():
    env = synthetic_env()
    agent = make_agent("wpl", env, seed=0, lr=0.5)
    history = measure_nonstationarity(agent, env, routes=1200, every=300)
    assert history["module_updates"] == 1200 // 16
    # One of the 120 evaluation samples changing its outcome moves the mean return by 2/120.
    assert max(abs(d) for d in history["return_drift"][1:]) >= 2 / 120 - 1e-12
    assert history["summary"]["module_drift"] > 0.01
    assert all(d > 0 for d in history["module_drift"][1:])


def test_snapshot_value_is_reproducible_and_leaves_the_agent_alone():
    env = synthetic_env()
    test = RoutingEnv(env.dataset, split="test", network=env.network)
    agent = make_agent("q", env, seed=0)
    for _ in range(200):
        agent.learn(run_episode(agent, env))
    probe = ReturnDriftProbe(test, episodes=50, greedy=False)
    snapshot = probe.snapshot(agent)
    rng_state = snapshot.rng.bit_generator.state
    assert probe.value(snapshot) == probe.value(snapshot)
    assert snapshot.rng.bit_generator.state == rng_state


class OneByOne:
    """A policy that acts one state at a time only (no ``greedy_batchable``)."""

    def __init__(self, agent):
        self.agent = agent

    @property
    def greedy(self):
        return self.agent.greedy

    @greedy.setter
    def greedy(self, value):
        self.agent.greedy = value

    def act(self, obs, info):
        return self.agent.act(obs, info)


@pytest.mark.parametrize("name", ["wpl", "actor-critic"])
def test_batched_snapshot_value_equals_routing_one_by_one(name, monkeypatch):
    env = synthetic_env(collaboration_reward=0.4)
    test = RoutingEnv(env.dataset, split="test", network=env.network, collaboration_reward=0.4)
    agent = make_agent(name, env, seed=0)
    for _ in range(300):
        agent.learn(run_episode(agent, env))
    probe = ReturnDriftProbe(test, episodes=70)
    one_by_one = probe.value(OneByOne(agent))
    monkeypatch.setattr(ReturnDriftProbe, "_route", None)  # the batched value routes nothing
    assert probe.value(probe.snapshot(agent)) == one_by_one
    assert one_by_one != evaluate(agent, test, 70)["accuracy"] * 2 - 1  # collaboration paid


def test_probe_refuses_an_eval_env_that_trains():
    env = synthetic_env()
    with pytest.raises(ValueError, match="train_modules=True"):
        ReturnDriftProbe(env)


# ---------------------------------------------------------------------- module drift


def test_module_drift_is_zero_when_frozen():
    env = synthetic_env(train_modules=False, module_batch_size=1)
    recorder = ModuleDriftRecorder(env.network)
    router = RandomRouter(seed=0)
    for _ in range(20):
        run_episode(router, env)
    assert recorder.updates == 0
    assert recorder.mean() == {name: 0.0 for name in recorder.history}


def test_module_drift_of_one_sgd_step_is_the_hand_computed_norm():
    lr = 0.3
    env = RoutingEnv("digits-mtl", module_batch_size=1, module_lr=lr)
    env.reset(seed=0, options={"sample_index": 7})
    network = env.network
    recorder = ModuleDriftRecorder(network)
    route = (1, 3, 2)
    # The gradient of the route's loss, computed apart on the untouched modules.
    x = torch.as_tensor(env.dataset.train.x[7:8])
    y = torch.as_tensor(env.dataset.train.y[7:8])
    h = x
    for depth, action in enumerate(route):
        h = network.layers[depth][action](h)
    loss = torch.nn.functional.cross_entropy(h, y)
    grads = {}
    for depth, action in enumerate(route):
        params = list(network.layers[depth][action].parameters())
        grads[depth] = torch.autograd.grad(loss, params, retain_graph=True)
    for action in route:
        env.step(action)
    assert recorder.updates == 1
    expected = {
        f"layer{d}": lr * math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads[d]))
        for d in range(3)
    }
    for name, value in expected.items():
        assert recorder.history[name][0] == pytest.approx(value, rel=1e-5)
    total = math.sqrt(sum(v * v for v in expected.values()))
    assert recorder.history["total"][0] == pytest.approx(total, rel=1e-5)
    recorder.close()
    env.reset()
    for action in route:
        env.step(action)
    assert recorder.updates == 1  # closed: no longer recording


# ---------------------------------------------------------------------- routing map


def test_map_stability_on_hand_made_maps():
    assert map_stability([[0, 1], [2, 3]], [[0, 1], [2, 4]]) == 0.75
    assert map_stability([[0, 1], [2, 3]], [[0, 1], [2, 3]]) == 1.0
    # Cells reached in neither map are left out; reached in one only counts as changed.
    assert map_stability([[0, -1]], [[0, -1]]) == 1.0
    assert map_stability([[0, -1]], [[0, 2]]) == 0.5
    assert math.isnan(map_stability([[-1, -1]], [[-1, -1]]))
    with pytest.raises(ValueError, match="shape"):
        map_stability([[0, 1]], [[0, 1, 2]])


def test_ari_is_one_for_routes_following_the_true_clusters():
    env = synthetic_env()
    clusters = env.dataset.task_clusters
    assert clusters.tolist() == [0, 1, 0, 1, 0, 1]
    test = RoutingEnv(env.dataset, split="test", network=env.network)
    by_cluster = FixedRouter({t: (int(c), int(c) + 2, int(c) + 4) for t, c in enumerate(clusters)})
    routing_map = evaluate(by_cluster, test)["routing_map"]
    assert task_partition_ari(routing_map, clusters) == 1.0
    # Cluster ids are labels: any renaming of the groups is the same partition.
    assert task_partition_ari(routing_map, 1 - clusters) == 1.0
    # Tasks 0-2 and 3-5 mix the clusters; per task, nothing shared.
    halves = [[0, 0, 0]] * 3 + [[1, 1, 1]] * 3
    assert task_partition_ari(halves, clusters) < 1.0
    assert task_partition_ari([[t, t, t] for t in range(6)], clusters) == 0.0
    # At one depth only: tasks that share the module there.
    mixed = [[0, t, 0] if c == 0 else [1, t, 1] for t, c in enumerate(clusters)]
    assert task_partition_ari(mixed, clusters, depth=0) == 1.0
    assert task_partition_ari(mixed, clusters) == 0.0
    with pytest.raises(ValueError, match="one cluster id per task"):
        task_partition_ari(routing_map, clusters[:3])


def test_measurements_record_every_metric():
    env = synthetic_env()
    agent = make_agent("q", env, seed=0)
    history = measure_nonstationarity(agent, env, routes=400, every=200, eval_episodes=60)
    for key in ("accuracy", "route_entropy", "modules_used", "map_stability", "ari"):
        assert len(history[key]) == 3
    assert math.isnan(history["map_stability"][0])
    assert all(0.0 <= s <= 1.0 for s in history["map_stability"][1:])
    assert -1.0 <= history["ari"][-1] <= 1.0
    assert set(history["module_drift_per_layer"][-1]) == {"layer0", "layer1", "layer2"}
    assert set(history["summary"]) == {
        "final_accuracy",
        "module_drift",
        "return_drift",
        "final_entropy",
        "final_modules_used",
        "map_stability",
        "final_ari",
        "final_ari_per_depth",
    }
    assert len(history["ari_per_depth"][-1]) == 3
    with pytest.raises(ValueError, match="positive"):
        measure_nonstationarity(agent, env, routes=0, every=10)


def test_sb3_models_are_measured_too():
    sb3_contrib = pytest.importorskip("sb3_contrib")
    env = synthetic_env(train_modules=False)
    model = sb3_contrib.MaskablePPO(
        "MultiInputPolicy", env, n_steps=48, batch_size=48, n_epochs=1, seed=0, device="cpu"
    )
    history = measure_nonstationarity(model, env, routes=32, every=16, eval_episodes=30)
    assert history["routes"] == [0, 16, 32]
    assert history["return_drift"] == [0.0, 0.0, 0.0]  # frozen modules, reproducible snapshots
    assert model.num_timesteps >= 32 * 3
