"""Epsilon-greedy REINFORCE (000 eq. 7.3) pinned to hand-computed numbers."""

import math

import numpy as np
import pytest
import torch

from agents.base import Episode
from agents.eps_reinforce import EpsilonReinforce


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
    infos = [{"action_mask": np.array([1, 1, 0], dtype=np.int8)} for _ in range(2)]
    return Episode(observations, [1, 0], [0.5, -1.0], infos)


def make(**kwargs):
    agent = EpsilonReinforce(2, 1, 2, 3, lr=0.1, optimizer="sgd", seed=0, epsilon=0.2, **kwargs)
    constant_output(agent.policy_net, [0.0, math.log(3.0), 5.0])  # pi = (1/4, 3/4, 0) when masked
    return agent


def test_behaviour_policy_is_eq_7_3():
    agent = make()
    obs = {"activation": np.zeros((2, 2), np.float32), "task": [0, 0], "depth": [0, 0]}
    probs = agent.policy_batch(obs, np.array([[1, 1, 0], [1, 0, 0]]))
    # argmax gets (1 - eps) + eps pi = 0.8 + 0.2 * 0.75, the others eps pi = 0.2 * 0.25
    assert probs == pytest.approx(np.array([[0.05, 0.95, 0.0], [1.0, 0.0, 0.0]]))


def test_ties_go_to_the_lower_index():
    agent = make()
    constant_output(agent.policy_net, [1.0, 1.0, 1.0])
    obs = {"activation": np.zeros((1, 2), np.float32), "task": [0], "depth": [0]}
    probs = agent.policy_batch(obs, np.ones((1, 3)))[0]
    assert probs == pytest.approx([0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3])


def test_importance_weights_loss_and_sgd_step():
    agent = make()
    batch = agent.collate([toy_episode()])
    pi = torch.tensor([[0.25, 0.75, 0.0], [0.25, 0.75, 0.0]])
    weights = agent.importance_weights(pi, batch)
    # action 1 is greedy: 0.75 / 0.95; action 0 is not: 0.25 / (0.2 * 0.25) = 1 / eps
    assert weights.tolist() == pytest.approx([0.75 / 0.95, 5.0])
    with torch.no_grad():
        loss = agent.loss(batch)
    # R = (-0.5, -1.0); L = -(w_0 R_0 log pi(1) + w_1 R_1 log pi(0))
    expected_loss = -(0.75 / 0.95 * -0.5 * math.log(0.75) + 5.0 * -1.0 * math.log(0.25))
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    agent.learn(toy_episode())
    # dL/db = -sum w_i R_i (onehot(a_i) - pi)
    w0 = 0.75 / 0.95
    grad0 = -(w0 * -0.5 * -0.25 + 5.0 * -1.0 * 0.75)
    expected = torch.tensor([0.0 - 0.1 * grad0, math.log(3.0) + 0.1 * grad0, 5.0])
    assert torch.allclose(agent.policy_net.layers[2].bias.detach(), expected, atol=1e-5)
