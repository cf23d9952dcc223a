"""The approximators, the state encoding and the behaviour every approximate agent shares."""

import numpy as np
import pytest
import torch

from agents.actor_critic import ActorCritic
from agents.advantage_approx import AdvantageApprox
from agents.base import Episode, annealed
from agents.eps_reinforce import EpsilonReinforce
from agents.mlp import MLP, encode_states, epsilon_greedy
from agents.persistence import load, save
from agents.q_approx import QApprox
from agents.reinforce_approx import ReinforceApprox
from agents.wpl_approx import WPLApprox

AGENTS = [ReinforceApprox, ActorCritic, QApprox, AdvantageApprox, WPLApprox, EpsilonReinforce]
DIM, TASKS, DEPTH, ACTIONS = 5, 3, 2, 4


def make(cls, seed=0, **kwargs):
    return cls(DIM, TASKS, DEPTH, ACTIONS, seed=seed, **kwargs)


def batch_obs(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "activation": rng.normal(size=(n, DIM)).astype(np.float32),
        "task": rng.integers(0, TASKS, n),
        "depth": rng.integers(0, DEPTH, n),
    }


def random_masks(n, seed=0):
    rng = np.random.default_rng(seed)
    masks = (rng.random((n, ACTIONS)) < 0.5).astype(np.int8)
    masks[np.arange(n), rng.integers(0, ACTIONS, n)] = 1  # at least one allowed action
    return masks


def episode(length=2, seed=0, actions=None, rewards=None):
    obs = batch_obs(length, seed)
    observations = [
        {"activation": obs["activation"][i], "task": int(obs["task"][i]), "depth": i}
        for i in range(length)
    ]
    infos = [{"action_mask": np.ones(ACTIONS, dtype=np.int8)} for _ in range(length)]
    actions = actions if actions is not None else [i % ACTIONS for i in range(length)]
    rewards = rewards if rewards is not None else [0.1 * (i + 1) for i in range(length)]
    return Episode(observations, actions, rewards, infos)


def parameters(agent):
    modules = [getattr(agent, name) for name in agent.state_names]
    return torch.cat(
        [
            p.detach().flatten()
            for m in modules
            if isinstance(m, torch.nn.Module)
            for p in m.parameters()
        ]
    )


# ---------------------------------------------------------------- encoding and MLP


def test_encode_states_concatenates_activation_task_and_depth_one_hots():
    h = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    x = encode_states(h, np.array([2, 0]), np.array([0, 3]), num_tasks=3, max_depth=3)
    assert x.dtype == torch.float32 and x.shape == (2, 2 + 3 + 4)
    assert x[0].tolist() == [0.5, -1.0, 0, 0, 1, 1, 0, 0, 0]
    assert x[1].tolist() == [2.0, 3.0, 1, 0, 0, 0, 0, 0, 1]


def test_encode_states_without_task_and_bad_input():
    x = encode_states(np.zeros((1, 2)), np.array([7]), np.array([1]), num_tasks=0, max_depth=2)
    assert x[0].tolist() == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="task"):
        encode_states(np.zeros((1, 2)), np.array([3]), np.array([0]), num_tasks=3, max_depth=2)
    with pytest.raises(ValueError, match="depth"):
        encode_states(np.zeros((1, 2)), np.array([0]), np.array([3]), num_tasks=3, max_depth=2)
    with pytest.raises(ValueError, match="activation"):
        encode_states(np.zeros(2), np.array([0]), np.array([0]), num_tasks=3, max_depth=2)


def test_mlp_is_two_layers_drawn_from_the_generator_only():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = MLP(7, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), before)
    b = MLP(7, 3, generator=torch.Generator().manual_seed(5))
    c = MLP(7, 3, generator=torch.Generator().manual_seed(6))
    shapes = [tuple(p.shape) for p in a.parameters()]
    assert shapes == [(64, 7), (64,), (3, 64), (3,)]
    assert [type(m).__name__ for m in a.layers] == ["Linear", "ReLU", "Linear"]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    bound = 1 / np.sqrt(7)
    assert a.layers[0].weight.abs().max() <= bound and a.layers[0].weight.abs().max() > 0.8 * bound


def test_epsilon_greedy_follows_eq_3_3_over_allowed_actions():
    values = torch.tensor([[1.0, 5.0, 2.0, 0.0], [1.0, 5.0, 2.0, 0.0], [3.0, 9.0, 0.0, 0.0]])
    masks = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [1, 0, 0, 0]]).bool()
    p = epsilon_greedy(values, masks, 0.3)
    expected = [[0.1, 0.7, 0.1, 0.1], [0.3, 0.0, 0.7, 0.0], [1.0, 0.0, 0.0, 0.0]]
    assert torch.allclose(p, torch.tensor(expected))


def test_annealed_is_linear_then_constant():
    assert annealed(1.0, 0.1, 10, 0) == 1.0
    assert annealed(1.0, 0.1, 10, 5) == pytest.approx(0.55)
    assert annealed(1.0, 0.1, 10, 50) == pytest.approx(0.1)
    assert annealed(0.3, None, 10, 50) == 0.3


# ---------------------------------------------------------------- every agent


@pytest.mark.parametrize("cls", AGENTS)
def test_actions_respect_masks_and_probabilities_are_masked(cls):
    agent = make(cls)
    obs, masks = batch_obs(300), random_masks(300)
    probs = agent.policy_batch(obs, masks)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.all(probs[masks == 0] == 0)
    actions = agent.act_batch(obs, masks)
    assert actions.shape == (300,) and actions.dtype == np.int64
    assert np.all(masks[np.arange(300), actions] == 1)
    for i in range(40):
        single = {key: value[i] for key, value in obs.items()}
        assert masks[i, agent.act(single, {"action_mask": masks[i]})] == 1
    agent.greedy = True
    greedy = agent.act_batch(obs, masks)
    assert np.all(masks[np.arange(300), greedy] == 1)
    with pytest.raises(ValueError, match="no action is allowed"):
        agent.act_batch(batch_obs(1), np.zeros((1, ACTIONS)))


@pytest.mark.parametrize("cls", AGENTS)
def test_sampling_matches_the_policy(cls):
    agent = make(cls)
    obs = {key: np.repeat(value[:1], 20000, axis=0) for key, value in batch_obs(1).items()}
    masks = np.tile(np.array([1, 0, 1, 1], dtype=np.int8), (20000, 1))
    probs = agent.policy_batch(obs, masks)[0]
    counts = np.bincount(agent.act_batch(obs, masks), minlength=ACTIONS) / 20000
    assert np.allclose(counts, probs, atol=0.015)
    assert counts[1] == 0


@pytest.mark.parametrize("cls", AGENTS)
def test_greedy_is_deterministic_and_takes_the_best_allowed_action(cls):
    agent = make(cls)
    agent.greedy = True
    obs, masks = batch_obs(100), random_masks(100)
    first = agent.act_batch(obs, masks)
    state = agent.rng.bit_generator.state
    assert np.array_equal(agent.act_batch(obs, masks), first)
    assert agent.rng.bit_generator.state == state  # greedy acting draws nothing
    with torch.no_grad():
        scores = agent.greedy_scores(agent.encode(obs)).numpy()
    assert np.array_equal(first, np.where(masks > 0, scores, -np.inf).argmax(axis=1))
    assert np.array_equal(agent.policy_batch(obs, masks), np.eye(ACTIONS)[first])


@pytest.mark.parametrize("cls", AGENTS)
def test_seeds_fix_parameters_and_actions(cls):
    obs, masks = batch_obs(200), np.ones((200, ACTIONS), dtype=np.int8)
    a, b, c = make(cls, seed=1), make(cls, seed=1), make(cls, seed=2)
    assert torch.equal(parameters(a), parameters(b))
    assert not torch.equal(parameters(a), parameters(c))
    actions = a.act_batch(obs, masks)
    assert np.array_equal(actions, b.act_batch(obs, masks))
    assert not np.array_equal(actions, c.act_batch(obs, masks))


@pytest.mark.parametrize("cls", AGENTS)
def test_global_torch_rng_untouched(cls):
    torch.manual_seed(0)
    before = torch.get_rng_state()
    agent = make(cls, seed=3)
    agent.act_batch(batch_obs(10), np.ones((10, ACTIONS), dtype=np.int8))
    agent.act(episode().observations[0], episode().infos[0])
    agent.learn(episode())
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)
    assert torch.equal(parameters(make(cls, seed=3)), parameters(make(cls, seed=3)))


@pytest.mark.parametrize("cls", AGENTS)
def test_act_is_act_batch_of_one(cls):
    a, b = make(cls, seed=4), make(cls, seed=4)
    obs, masks = batch_obs(30), random_masks(30)
    for i in range(30):
        single = {key: value[i] for key, value in obs.items()}
        batch = {key: value[i : i + 1] for key, value in obs.items()}
        assert a.act(single, {"action_mask": masks[i]}) == b.act_batch(batch, masks[i : i + 1])[0]


@pytest.mark.parametrize("cls", AGENTS)
def test_learn_batch_of_one_equals_learn_and_batches_average_routes(cls):
    a, b = make(cls, optimizer="sgd", lr=0.05), make(cls, optimizer="sgd", lr=0.05)
    ep = episode(2, seed=1, actions=[1, 3], rewards=[0.2, -1.0])
    a.learn(ep)
    b.learn_batch([ep])
    assert torch.equal(parameters(a), parameters(b))
    assert a.episodes_seen == b.episodes_seen == 1
    other = episode(1, seed=2, actions=[2], rewards=[1.0])
    with torch.no_grad():
        together = a.loss(a.collate([ep, other]))
        apart = (a.loss(a.collate([ep])) + a.loss(a.collate([other]))) / 2
    assert together.item() == pytest.approx(apart.item(), rel=1e-5)


@pytest.mark.parametrize("cls", AGENTS)
def test_learning_changes_parameters_and_masked_actions_are_rejected(cls):
    agent = make(cls)
    before = parameters(agent).clone()
    agent.learn(episode())
    assert not torch.equal(parameters(agent), before)
    bad = episode(1, actions=[2])
    bad.infos[0]["action_mask"] = np.array([1, 1, 0, 1], dtype=np.int8)
    with pytest.raises(ValueError, match="forbids"):
        agent.learn(bad)


@pytest.mark.parametrize("cls", AGENTS)
def test_save_load_round_trip(cls, tmp_path):
    agent = make(cls, seed=5)
    for k in range(5):
        agent.learn(episode(2, seed=k, actions=[k % ACTIONS, 1], rewards=[0.0, 1.0]))
    agent.act_batch(batch_obs(3), np.ones((3, ACTIONS)))
    save(agent, tmp_path / "agent.pt")
    loaded = load(tmp_path / "agent.pt")
    assert type(loaded) is cls and loaded.config == agent.config
    assert loaded.episodes_seen == 5
    assert torch.equal(parameters(loaded), parameters(agent))
    obs, masks = batch_obs(50, seed=9), random_masks(50, seed=9)
    assert np.array_equal(loaded.act_batch(obs, masks), agent.act_batch(obs, masks))
    ep = episode(2, seed=7)
    agent.learn(ep)
    loaded.learn(ep)  # the optimizer state came along too
    assert torch.equal(parameters(loaded), parameters(agent))


@pytest.mark.parametrize("cls", [ReinforceApprox, EpsilonReinforce])
def test_checkpoints_of_the_policy_network_under_its_old_name_still_load(cls, tmp_path):
    agent = make(cls, seed=5)
    agent.learn(episode(2, seed=1))
    save(agent, tmp_path / "agent.pt")
    checkpoint = torch.load(tmp_path / "agent.pt", weights_only=True)
    checkpoint["state"]["policy"] = checkpoint["state"].pop("policy_net")  # the earlier key
    torch.save(checkpoint, tmp_path / "old.pt")
    loaded = load(tmp_path / "old.pt")
    assert torch.equal(parameters(loaded), parameters(agent))


@pytest.mark.parametrize("cls", AGENTS)
def test_learns_a_three_armed_bandit(cls):
    agent = cls(2, 1, 1, 3, lr=1e-2, seed=0)
    obs = {"activation": np.zeros(2, dtype=np.float32), "task": 0, "depth": 0}
    info = {"action_mask": np.ones(3, dtype=np.int8)}
    for _ in range(300):
        action = agent.act(obs, info)
        agent.learn(Episode([obs], [action], [1.0 if action == 2 else -1.0], [info]))
    agent.greedy = True
    assert agent.act(obs, info) == 2
