"""Monte Carlo advantage learning (000 eq. 7.1-7.2) pinned to hand-computed numbers."""

import numpy as np
import pytest
import torch

from agents.advantage_approx import AdvantageApprox
from agents.base import Episode


def constant_output(net, values):
    """Zero the last weights so the net outputs ``values`` whatever the state."""
    with torch.no_grad():
        net.layers[2].weight.zero_()
        net.layers[2].bias.copy_(torch.tensor(values))


def toy_episode():
    observations = [
        {"activation": np.array([0.3, -0.2], dtype=np.float32), "task": 0, "depth": d}
        for d in range(2)
    ]
    infos = [{"action_mask": np.array([1, 1], dtype=np.int8)} for _ in range(2)]
    return Episode(observations, [1, 0], [0.5, -1.0], infos)


def make():
    agent = AdvantageApprox(2, 1, 2, 2, lr=0.1, optimizer="sgd", seed=0, epsilon=0.2)
    constant_output(agent.value, [0.5])  # V(s) = 0.5
    constant_output(agent.advantage, [0.2, -0.1])  # A(s, .) = (0.2, -0.1)
    return agent


def test_targets_are_return_and_return_minus_value():
    agent = make()
    value_target, advantage_target = agent.targets(agent.collate([toy_episode()]))
    # R = (0.5 - 1.0, -1.0) = (-0.5, -1.0); eq. 7.2 target R - V = (-1.0, -1.5)
    assert torch.allclose(value_target, torch.tensor([-0.5, -1.0]))
    assert torch.allclose(advantage_target, torch.tensor([-1.0, -1.5]))


def test_one_sgd_step_is_eq_7_1_and_7_2():
    agent = make()
    with torch.no_grad():
        loss = agent.loss(agent.collate([toy_episode()]))
    # L_V = 1/2 ((-0.5 - 0.5)^2 + (-1.0 - 0.5)^2); L_A = 1/2 ((-1.0 + 0.1)^2 + (-1.5 - 0.2)^2)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 2.25) + 0.5 * (0.81 + 2.89))
    agent.learn(toy_episode())
    # eq. 7.1 (both decisions share the constant V): V += alpha * sum (R - V) = 0.1 * -2.5
    assert agent.value.layers[2].bias.item() == pytest.approx(0.5 - 0.25)
    # eq. 7.2: A(a) += alpha (R - V - A(a)): A(1) += 0.1 * -0.9, A(0) += 0.1 * -1.7
    expected = torch.tensor([0.2 - 0.17, -0.1 - 0.09])
    assert torch.allclose(agent.advantage.layers[2].bias.detach(), expected, atol=1e-6)


def test_acts_epsilon_greedy_on_the_advantage():
    agent = make()
    obs = {"activation": np.zeros((1, 2), np.float32), "task": [0], "depth": [0]}
    assert np.allclose(agent.policy_batch(obs, np.ones((1, 2))), [[0.8, 0.2]])
    agent.greedy = True
    assert agent.act_batch(obs, np.ones((1, 2)))[0] == 0
    assert agent.act_batch(obs, np.array([[0, 1]]))[0] == 1
