"""REINFORCE without baseline (000 7.1.2) pinned to hand-computed numbers."""

import math

import numpy as np
import pytest
import torch

from agents.base import Episode
from agents.reinforce_approx import ReinforceApprox


def constant_output(net, values):
    """Zero the last weights so the net outputs ``values`` whatever the state."""
    with torch.no_grad():
        net.layers[2].weight.zero_()
        net.layers[2].bias.copy_(torch.tensor(values))


def toy_episode():
    # Two decisions; action 2 exists but is masked, so the toy is a two-action choice.
    observations = [
        {"activation": np.array([0.3, -0.2], dtype=np.float32), "task": 0, "depth": d}
        for d in range(2)
    ]
    infos = [{"action_mask": np.array([1, 1, 0], dtype=np.int8)} for _ in range(2)]
    return Episode(observations, [1, 0], [0.5, -1.0], infos)


def test_loss_and_sgd_step_match_hand_computation():
    agent = ReinforceApprox(2, 1, 2, 3, lr=0.1, optimizer="sgd", seed=0)
    constant_output(agent.policy_net, [0.0, math.log(3.0), 5.0])  # pi = (1/4, 3/4, 0)
    # Returns (gamma = 1): R_0 = 0.5 - 1.0 = -0.5, R_1 = -1.0.
    # L = -(R_0 log pi(1) + R_1 log pi(0)) = 0.5 log(3/4) + log(1/4)
    expected_loss = 0.5 * math.log(0.75) + math.log(0.25)
    with torch.no_grad():
        loss = agent.loss(agent.collate([toy_episode()]))
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    assert expected_loss == pytest.approx(-1.5301354, abs=1e-7)

    # dL/db = -sum_i R_i (onehot(a_i) - pi) = -(-0.5 (-1/4, 1/4, 0) - 1.0 (3/4, -3/4, 0))
    #       = (0.625, -0.625, 0); the masked logit gets no gradient.
    agent.learn(toy_episode())
    bias = agent.policy_net.layers[2].bias.detach()
    expected = torch.tensor([0.0 - 0.1 * 0.625, math.log(3.0) + 0.1 * 0.625, 5.0])
    assert torch.allclose(bias, expected, atol=1e-6)
    # The last weights get grad (dL/db) x hidden, the first layer none (last weights are zero).
    assert torch.all(agent.policy_net.layers[2].weight[2] == 0)


def test_masked_action_has_zero_probability():
    agent = ReinforceApprox(2, 1, 2, 3, seed=0)
    constant_output(agent.policy_net, [0.0, math.log(3.0), 5.0])
    obs = {"activation": np.zeros((1, 2), np.float32), "task": [0], "depth": [0]}
    probs = agent.policy_batch(obs, np.array([[1, 1, 0]]))
    assert np.allclose(probs, [[0.25, 0.75, 0.0]])
    agent.greedy = True
    assert agent.act_batch(obs, np.array([[1, 1, 0]]))[0] == 1
    assert agent.act_batch(obs, np.array([[1, 1, 1]]))[0] == 2
