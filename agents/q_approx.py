"""Q-learning with an MLP Q-function and epsilon-greedy acting (``000`` eq. 3.2-3.3, 7.1.2).

``000`` eq. 3.2 updates ``Q(s, a) += alpha (r + gamma max_a' Q(s', a') - Q(s, a))``; for the
approximate version ``000`` 7.1.2 and ``001`` 3.1.2 "train the approximation network to minimize
the l2-norm of the difference between the current estimate and the target value":

    y_i = r_i + gamma max_{a' allowed at s_{i+1}} Q(s_{i+1}, a')    (y_i = r_i at a route's end)
    L   = sum_i 1/2 (y_i - Q(s_i, a_i))^2

The target is held fixed (no gradient through ``y``) and comes from the network itself: the seeds
use "vanilla q-learning", without a target network or replay. The 1/2 makes one SGD step of rate
``alpha`` on a one-hot (tabular) parameterisation exactly eq. 3.2.

Acting follows eq. 3.3: the greedy allowed action with probability ``1 - epsilon``, each other
allowed action with ``epsilon / (n - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.base import EpsilonSchedule
from agents.mlp import ApproxAgent, Batch, epsilon_greedy, masked_logits
from agents.persistence import register


@register
@dataclass(eq=False)
class QApprox(EpsilonSchedule, ApproxAgent):
    """Q-learning router with an MLP ``Q(s, .)`` and (optionally annealed) epsilon-greedy acting.

    Arguments: those of :class:`~agents.mlp.ApproxAgent` (``lr``: of the Q network; ``gamma``
    discounts the bootstrapped target), then those of :class:`~agents.base.EpsilonSchedule`
    (eq. 3.3's exploration probability).
    """

    state_names = (*ApproxAgent.state_names, "q_net", "optimizer")

    def init_learned_state(self) -> None:
        """The Q network (one value per action) and its optimizer."""
        self.q_net = self.make_net(self.num_actions)
        self.optimizer = self.make_optimizer([self.q_net], self.lr)

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Epsilon-greedy probabilities on ``Q(s, .)`` over the allowed actions (eq. 3.3)."""
        return epsilon_greedy(self.q_net(states), masks, self.current_epsilon)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """``Q(s, .)``."""
        return self.q_net(states)

    def td_targets(self, batch: Batch) -> torch.Tensor:
        """``y_i = r_i + gamma max_{a' allowed} Q(s_{i+1}, a')``, and ``r_i`` at a route's end."""
        with torch.no_grad():
            q = self.q_net(batch.states)
            next_best = masked_logits(q, batch.masks).max(dim=1).values[batch.next_index]
            bootstrap = torch.where(batch.terminal, 0.0, next_best)
        return batch.rewards + self.gamma * bootstrap  # 000 eq. 3.2: r + gamma max_a' Q(s', a')

    def loss(self, batch: Batch) -> torch.Tensor:
        """``sum_i 1/2 (y_i - Q(s_i, a_i))^2`` per route, averaged over the batch's routes."""
        q_taken = self.q_net(batch.states).gather(1, batch.actions[:, None]).squeeze(1)
        td_error = self.td_targets(batch) - q_taken
        return 0.5 * (td_error**2).sum() / batch.num_episodes
