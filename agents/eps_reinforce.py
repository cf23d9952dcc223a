"""Epsilon-greedy REINFORCE with importance weights (``000`` 7.1.6, eq. 7.3).

``000`` 7.1.6 tests whether policy-gradient routers lag value-based ones because of how they
explore. Acting uses the epsilon-greedy version of the policy, eq. 7.3:

    pi_eps(s, a) = (1 - eps) + eps pi(s, a)   if a = argmax pi(s)  (ties: lower index)
                   eps pi(s, a)               otherwise

i.e. the greedy action with probability ``1 - eps`` and a sample of ``pi`` with probability
``eps``. (The sentence before the equation states the two roles the other way round; the equation
is followed, and it is the reading under which the agent "act[s] more like a value-based
approach", as the section reports.) "When training, we sample from pi_eps but update pi, and
compensate for the difference by scaling the magnitude of the gradient updates using importance
weighting":

    L = - sum_i [pi(a_i|s_i) / pi_eps(a_i|s_i)]_detached R_i log pi(a_i|s_i)

The weight is computed from the policy at learning time; it equals the weight under the policy
that acted whenever no update happens between acting and learning, as in the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.base import EpsilonSchedule
from agents.mlp import Batch, masked_greedy, masked_logits
from agents.persistence import register
from agents.reinforce_approx import ReinforceApprox


@register
@dataclass(eq=False)
class EpsilonReinforce(EpsilonSchedule, ReinforceApprox):
    """REINFORCE router that acts epsilon-greedily on its policy and corrects by importance weights.

    The policy network ``pi`` is :class:`~agents.reinforce_approx.ReinforceApprox`'s; greedy
    mode takes its most probable allowed action.

    Arguments: those of :class:`~agents.mlp.ApproxAgent` (``lr``: of the policy network), then
    those of :class:`~agents.base.EpsilonSchedule`: ``epsilon`` is eq. 7.3's probability of
    sampling from ``pi`` instead of taking its argmax, or the start of its schedule.
    """

    def mix(self, pi: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi_eps`` of eq. 7.3 from the policy ``pi`` (zero on masked actions)."""
        greedy = torch.nn.functional.one_hot(masked_greedy(pi, masks), self.num_actions)
        eps = self.current_epsilon
        return (1 - eps) * greedy.to(pi.dtype) + eps * pi  # eq. 7.3

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi_eps(s, .)`` of eq. 7.3, from REINFORCE's ``pi(. | s)``."""
        return self.mix(super().behaviour(states, masks), masks)

    def importance_weights(self, pi: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``pi(a_i|s_i) / pi_eps(a_i|s_i)`` for the actions taken, without gradient."""
        pi = pi.detach()
        mu = self.mix(pi, batch.masks)
        taken = batch.actions[:, None]
        return (pi.gather(1, taken) / mu.gather(1, taken)).squeeze(1)

    def loss(self, batch: Batch) -> torch.Tensor:
        """``-sum_i w_i R_i log pi(a_i|s_i)`` per route, averaged over the routes of the batch."""
        logits = masked_logits(self.policy_net(batch.states), batch.masks)
        log_pi = torch.log_softmax(logits, dim=-1)
        weights = self.importance_weights(log_pi.exp(), batch)
        log_pi_taken = log_pi.gather(1, batch.actions[:, None]).squeeze(1)
        return -(weights * batch.returns * log_pi_taken).sum() / batch.num_episodes
