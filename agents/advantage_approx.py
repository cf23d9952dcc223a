"""Monte Carlo advantage learning, separate MLP estimators V and A (``000`` eq. 7.1-7.2).

``000`` 7.1.2 (after Baird 1993, "advantage updating"): "a learner for the on-policy value
function, and a separate learner for the advantage", in the Monte Carlo version that the thesis
found to learn faster than the bootstrapped one. With ``R_t = r_f + sum_{j=t}^d r_j``:

    V(s_t)      <- V(s_t)      + alpha (R_t - V(s_t))                (7.1)
    A(s_t, a_t) <- A(s_t, a_t) + alpha (R_t - V(s_t) - A(s_t, a_t))  (7.2)

(eq. 7.2 prints ``A(s_t)`` as the first term of the right-hand side; the update of the entry
``A(s_t, a_t)`` is meant.) With approximators each update becomes a regression, the semi-gradient
step of

    L_V = sum_t 1/2 (R_t - V(s_t))^2
    L_A = sum_t 1/2 ([R_t - V(s_t)]_detached - A(s_t, a_t))^2

whose SGD step of rate ``alpha`` on a one-hot (tabular) parameterisation is exactly eq. 7.1-7.2.
Both use the value estimate from before this update (one optimizer step per batch); the return
``R_t`` is :meth:`agents.base.Episode.returns` (undiscounted by default, as in the equations).
The decomposition is ``Q(s, a) = V(s) + A(s, a)`` (eq. 3.4-3.5), so the greedy action maximises
``A(s, .)``; acting is epsilon-greedy on it (eq. 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.base import EpsilonSchedule
from agents.mlp import ApproxAgent, Batch, epsilon_greedy
from agents.persistence import register


@register
@dataclass(eq=False)
class AdvantageApprox(EpsilonSchedule, ApproxAgent):
    """Advantage-learning router: separate MLPs for ``V(s)`` and ``A(s, .)``, epsilon-greedy on A.

    Arguments: those of :class:`~agents.mlp.ApproxAgent` (``lr`` is ``alpha``, of both
    estimators; ``gamma=1`` reproduces eq. 7.1-7.2), then those of
    :class:`~agents.base.EpsilonSchedule` (eq. 3.3's exploration probability).
    """

    state_names = (*ApproxAgent.state_names, "value", "advantage", "optimizer")

    def init_learned_state(self) -> None:
        """The estimators ``V`` (one value) and ``A`` (one value per action), and one optimizer."""
        self.value = self.make_net(1)
        self.advantage = self.make_net(self.num_actions)
        self.optimizer = self.make_optimizer([self.value, self.advantage], self.lr)

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Epsilon-greedy probabilities on ``A(s, .)`` over the allowed actions (eq. 3.3)."""
        return epsilon_greedy(self.advantage(states), masks, self.current_epsilon)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """``A(s, .)``."""
        return self.advantage(states)

    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Regression targets ``(R_t, R_t - V(s_t))`` of ``V`` (eq. 7.1) and ``A`` (eq. 7.2)."""
        with torch.no_grad():
            values = self.value(batch.states).squeeze(1)
        return batch.returns, batch.returns - values

    def loss(self, batch: Batch) -> torch.Tensor:
        """``L_V + L_A`` per route, averaged over the routes of the batch."""
        value_target, advantage_target = self.targets(batch)
        values = self.value(batch.states).squeeze(1)
        advantages = self.advantage(batch.states).gather(1, batch.actions[:, None]).squeeze(1)
        value_loss = 0.5 * ((value_target - values) ** 2).sum()  # eq. 7.1: R_t - V(s_t)
        advantage_loss = 0.5 * ((advantage_target - advantages) ** 2).sum()  # eq. 7.2
        return (value_loss + advantage_loss) / batch.num_episodes
