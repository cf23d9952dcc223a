"""Q-learning with an MLP (000 eq. 3.2-3.3) pinned to hand-computed numbers."""

import numpy as np
import pytest
import torch

from agents.base import Episode
from agents.q_approx import QApprox


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
    masks = [np.array([1, 1, 1], dtype=np.int8), np.array([1, 1, 0], dtype=np.int8)]
    return Episode(observations, [0, 1], [0.5, -1.0], [{"action_mask": m} for m in masks])


def make(**kwargs):
    agent = QApprox(2, 1, 2, 3, lr=0.1, optimizer="sgd", gamma=0.9, seed=0, **kwargs)
    constant_output(agent.q_net, [1.0, 2.0, 5.0])  # Q(s, .) = (1, 2, 5) everywhere
    return agent


def test_td_targets_max_over_allowed_next_actions_and_terminal():
    agent = make()
    targets = agent.td_targets(agent.collate([toy_episode()]))
    # y_0 = 0.5 + 0.9 * max(Q(s_1, 0), Q(s_1, 1)) = 0.5 + 0.9 * 2 (action 2 is masked at s_1)
    # y_1 = -1.0: the route ends, nothing to bootstrap.
    assert torch.allclose(targets, torch.tensor([2.3, -1.0]))


def test_loss_and_semi_gradient_sgd_step():
    agent = make()
    with torch.no_grad():
        loss = agent.loss(agent.collate([toy_episode()]))
    # TD errors: 2.3 - Q(s_0, 0) = 1.3 and -1.0 - Q(s_1, 1) = -3.0
    assert loss.item() == pytest.approx(0.5 * (1.3**2 + 3.0**2))
    agent.learn(toy_episode())
    # Q(a) -= lr * -(sum of its TD errors); no gradient through the target (it also reads Q(1)).
    expected = torch.tensor([1.0 + 0.1 * 1.3, 2.0 - 0.1 * 3.0, 5.0])
    assert torch.allclose(agent.q_net.layers[2].bias.detach(), expected, atol=1e-6)


def test_epsilon_greedy_probabilities_and_annealing():
    agent = make(epsilon=0.5, epsilon_final=0.1, epsilon_decay_episodes=4)
    obs = {"activation": np.zeros((2, 2), np.float32), "task": [0, 0], "depth": [0, 1]}
    masks = np.array([[1, 1, 1], [1, 1, 0]])
    # eq. 3.3: greedy 1 - eps, others eps / (n_allowed - 1)
    assert np.allclose(agent.policy_batch(obs, masks), [[0.25, 0.25, 0.5], [0.5, 0.5, 0.0]])
    agent.learn_batch([toy_episode(), toy_episode()])
    assert agent.current_epsilon == pytest.approx(0.3)
    agent.learn_batch([toy_episode()] * 3)
    assert agent.current_epsilon == pytest.approx(0.1)
