"""Advantage actor-critic (000 7.1.2) pinned to hand-computed numbers."""

import math

import numpy as np
import pytest
import torch

from agents.actor_critic import ActorCritic
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
    infos = [{"action_mask": np.array([1, 1, 0], dtype=np.int8)} for _ in range(2)]
    return Episode(observations, [1, 0], [0.5, -1.0], infos)


def make():
    agent = ActorCritic(2, 1, 2, 3, lr=0.1, optimizer="sgd", seed=0)
    constant_output(agent.actor, [0.0, math.log(3.0), 5.0])  # pi = (1/4, 3/4, 0)
    constant_output(agent.critic, [0.25])  # V(s) = 0.25
    return agent


def test_separate_actor_and_critic_networks():
    agent = make()
    assert agent.actor.layers[2].out_features == 3 and agent.critic.layers[2].out_features == 1
    actor_ids = {id(p) for p in agent.actor.parameters()}
    assert not actor_ids & {id(p) for p in agent.critic.parameters()}


def test_actor_and_critic_losses_match_hand_computation():
    agent = make()
    # R = (-0.5, -1.0); advantages R - V = (-0.75, -1.25).
    with torch.no_grad():
        actor_loss, critic_loss = agent.losses(agent.collate([toy_episode()]))
    # actor: -(A_0 log pi(1) + A_1 log pi(0)) = 0.75 log(3/4) + 1.25 log(1/4)
    assert actor_loss.item() == pytest.approx(0.75 * math.log(0.75) + 1.25 * math.log(0.25))
    # critic: 0.75^2 + 1.25^2
    assert critic_loss.item() == pytest.approx(2.125)


def test_one_sgd_step_matches_hand_computation():
    agent = make()
    agent.learn(toy_episode())
    # critic: d/dc sum (R_i - c)^2 = -2 sum (R_i - c) = 4.0
    assert agent.critic.layers[2].bias.item() == pytest.approx(0.25 - 0.1 * 4.0)
    # actor: -sum A_i (onehot(a_i) - pi) = -(-0.75 (-1/4, 1/4) - 1.25 (3/4, -3/4)) = (0.75, -0.75)
    # (the advantage is a constant: no actor gradient reaches the critic and vice versa).
    expected = torch.tensor([-0.075, math.log(3.0) + 0.075, 5.0])
    assert torch.allclose(agent.actor.layers[2].bias.detach(), expected, atol=1e-6)
