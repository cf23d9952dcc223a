import numpy as np
import pytest
import torch

from agents import FixedRouter, make_agent, pretrain_modules, train
from agents.training import _batch, _final_columns, run_episode
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


def logged_steps(rng: np.random.Generator, first: int, last: int, envs: int) -> dict:
    """Steps as _VectorRoutes logs them: activation, task, depth, masks, actions, rewards."""
    return {
        number: (
            rng.standard_normal((envs, 3)).astype(np.float32),
            rng.integers(0, 4, envs),
            rng.integers(0, 3, envs),
            rng.integers(0, 2, (envs, 5)).astype(np.int8),
            rng.integers(0, 5, envs),
            rng.standard_normal(envs),
        )
        for number in range(first, last + 1)
    }


@pytest.mark.parametrize(
    ("starts", "rows"),
    [
        ([4, 4, 4, 4, 4, 4], [0, 1, 2, 3, 4, 5]),  # every route began together: stacked
        ([4, 4, 4, 4, 4, 4], [1, 3, 4]),
        ([2, 4, 3, 4, 2, 4], [0, 1, 2, 3, 4, 5]),  # different starts: padded
        ([2, 4, 3, 4, 2, 4], [0, 2, 5]),
    ],
)
def test_batch_stacks_each_route_from_its_steps(starts, rows):
    """The routes cut from the logged steps, against a loop over routes and their steps."""
    rng = np.random.default_rng(0)
    rows = np.array(rows)
    starts = np.array(starts)[rows]
    last = 5
    steps = logged_steps(rng, 2, last, envs=6)
    batch = _batch(steps, starts, last, rows, {"final_reward": np.zeros(len(rows))})
    width = last - starts.min() + 1
    np.testing.assert_array_equal(batch.lengths, last - starts + 1)
    fields = (batch.activation, batch.task, batch.depth, batch.action_mask, batch.actions)
    for field, got in enumerate((*fields, batch.rewards)):
        template = steps[last][field]
        assert got.dtype == template.dtype and got.shape[:2] == (len(rows), width)
        padding = -1 if field == 4 else 0
        for route, (row, start) in enumerate(zip(rows.tolist(), starts.tolist(), strict=True)):
            for position in range(width):
                number = start + position
                expected = steps[number][field][row] if number <= last else padding
                np.testing.assert_array_equal(got[route, position], expected)
    assert not np.shares_memory(batch.activation, steps[last][0])


@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [1, 2]])
def test_final_columns_are_fresh_rows_of_the_final_infos(rows):
    final = {"correct": np.array([True, False, True, True]), "path": np.arange(12).reshape(4, 3)}
    infos = {"final_info": {**final, "_correct": np.ones(4, dtype=bool)}}
    columns = _final_columns(infos, np.array(rows))
    assert set(columns) == {"correct", "path"}
    for key, column in columns.items():
        np.testing.assert_array_equal(column, final[key][rows])
        assert not np.shares_memory(column, final[key])
