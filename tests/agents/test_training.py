import numpy as np
import pytest
import torch

from agents import FixedRouter, make_agent, pretrain_modules, train
from agents.training import run_episode
from routing_env import RoutingEnv, RoutingVectorEnv


def params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


@pytest.mark.parametrize("vector", [False, True])
def test_pretrain_then_freeze(vector):
    kwargs = {"module_batch_size": 16, "train_modules": False}
    if vector:
        env = RoutingVectorEnv(8, "digits-mtl", **kwargs)
    else:
        env = RoutingEnv("digits-mtl", **kwargs)
    initial = params(env.network)
    report = pretrain_modules(env, 64, router="per-task", seed=0)
    assert report["routes"] == 64 and report["module_updates"] == 4
    assert env.network.num_updates == 4 and env.train_modules is False
    pretrained = params(env.network)
    assert not torch.equal(initial, pretrained)
    # Frozen: a learning router no longer moves the modules.
    agent = make_agent("wpl", env, seed=0)
    train(agent, env, 64, seed=None, progress=False)
    assert torch.equal(pretrained, params(env.network))


def test_pretrain_per_task_trains_only_each_tasks_own_modules():
    env = RoutingEnv("synthetic-mtl", dataset_options={"samples_per_task": 100}, num_modules=8)
    before = [params(m) for layer in env.network.layers for m in layer]
    pretrain_modules(env, 160, router="per-task", seed=0, freeze=False)
    assert env.train_modules is True
    after = [params(m) for layer in env.network.layers for m in layer]
    pairs = enumerate(zip(before, after, strict=True))
    changed = {i % 8 for i, (b, a) in pairs if not torch.equal(b, a)}
    assert changed == set(range(6))  # six tasks, modules 0-5; modules 6 and 7 untouched


def test_pretrain_with_any_router_and_bad_input():
    env = RoutingEnv("digits-mtl", module_batch_size=1)
    router = FixedRouter({t: (0, 0, 0) for t in range(10)})
    report = pretrain_modules(env, 5, router=router, seed=0)
    assert report["module_updates"] == 5
    assert run_episode(router, env).final_info["path"].tolist() == [0, 0, 0]
    assert env.network.num_updates == 5
    with pytest.raises(ValueError, match="router must be"):
        pretrain_modules(env, 5, router="greedy")
    with pytest.raises(ValueError, match="routes must be positive"):
        pretrain_modules(env, 0)
    assert np.isfinite(report["train_accuracy"])
