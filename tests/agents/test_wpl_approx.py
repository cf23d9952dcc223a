"""WPL with function approximation (000 Algorithm 7.1) pinned to hand-computed numbers."""

import math

import numpy as np
import pytest
import torch

from agents.base import Episode
from agents.wpl_approx import WPLApprox

MASK = torch.tensor([[True, True, False]])


def constant_output(net, values):
    """Zero the last weights so the net outputs ``values`` whatever the state."""
    with torch.no_grad():
        net.layers[2].weight.zero_()
        net.layers[2].bias.copy_(torch.tensor(values))


def target(weighting, pi, action, delta, mask=MASK):
    agent = WPLApprox(2, 1, 1, 3, weighting=weighting, seed=0)
    out = agent.target_policy(
        torch.tensor([pi]), torch.tensor([action]), torch.tensor([delta]), mask
    )
    return out[0].tolist()


@pytest.mark.parametrize(
    ("weighting", "pi", "action", "delta", "expected"),
    [
        # delta > 0, original: delta (1 - pi(a)) = 0.1 -> (0.9, 0.2) / 1.1
        ("original", [0.8, 0.2, 0.0], 0, 0.5, [0.9 / 1.1, 0.2 / 1.1, 0.0]),
        # delta > 0, printed: delta pi(a) = 0.4 -> (1.2 clipped to 1, 0.2) / 1.2
        ("printed", [0.8, 0.2, 0.0], 0, 0.5, [1 / 1.2, 0.2 / 1.2, 0.0]),
        # delta < 0, original: delta pi(a) = -0.4 -> (0.4, 0.2) / 0.6
        ("original", [0.8, 0.2, 0.0], 0, -0.5, [2 / 3, 1 / 3, 0.0]),
        # delta < 0, printed: delta (1 - pi(a)) = -0.1 -> (0.7, 0.2) / 0.9
        ("printed", [0.8, 0.2, 0.0], 0, -0.5, [0.7 / 0.9, 0.2 / 0.9, 0.0]),
        # pi(1) + delta pi(1) = 0.2 - 0.3 clipped to 0 -> pure action 0
        ("original", [0.8, 0.2, 0.0], 1, -1.5, [1.0, 0.0, 0.0]),
        # everything clips to 0: uniform over the allowed actions
        ("original", [0.0, 1.0, 0.0], 1, -2.0, [0.5, 0.5, 0.0]),
    ],
)
def test_target_policy(weighting, pi, action, delta, expected):
    assert target(weighting, pi, action, delta) == pytest.approx(expected, abs=1e-6)


def test_unknown_weighting_raises():
    with pytest.raises(ValueError, match="weighting"):
        WPLApprox(2, 1, 1, 3, weighting="swapped")


def test_losses_and_one_sgd_step_match_hand_computation():
    agent = WPLApprox(2, 1, 1, 2, lr=0.1, optimizer="sgd", seed=0)
    constant_output(agent.actor, [math.log(4.0), 0.0])  # pi = (0.8, 0.2)
    constant_output(agent.critic, [0.25])  # Rhat = 0.25
    obs = {"activation": np.array([0.3, -0.2], dtype=np.float32), "task": 0, "depth": 0}
    episode = Episode([obs], [0], [1.0], [{"action_mask": np.array([1, 1], dtype=np.int8)}])
    # delta = 1 - 0.25 = 0.75 -> 0.75 (1 - 0.8) = 0.15 -> target (0.95, 0.2) / 1.15
    t = np.array([0.95, 0.2]) / 1.15
    pi = np.array([0.8, 0.2])
    with torch.no_grad():
        actor_loss, critic_loss = agent.losses(agent.collate([episode]))
    assert actor_loss.item() == pytest.approx(np.mean((pi - t) ** 2), rel=1e-5)
    assert critic_loss.item() == pytest.approx(0.75**2)
    agent.learn(episode)
    # critic: d/dc (c - R)^2 = 2 (0.25 - 1) = -1.5
    assert agent.critic.layers[2].bias.item() == pytest.approx(0.25 + 0.15)
    # actor: d/dpi mean (pi - t)^2 = (pi - t); through softmax: (diag(pi) - pi pi^T)(pi - t);
    # the target is a constant.
    jacobian = np.diag(pi) - np.outer(pi, pi)
    grad = jacobian @ (pi - t)
    expected = np.array([math.log(4.0), 0.0]) - 0.1 * grad
    assert agent.actor.layers[2].bias.detach().numpy() == pytest.approx(expected, abs=1e-6)
