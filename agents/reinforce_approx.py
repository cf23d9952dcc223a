"""REINFORCE without a baseline, with an MLP policy (``000`` 7.1.2, eq. 3.12; ``001`` Table 3).

``000`` 7.1.2: "we train the router to minimize ``-log P(a_k|pi) (r_f + sum_{j=k}^t r_{i,j})``,
where k is the current time index". Summed over the decisions of a route:

    L = - sum_i R_i log pi(a_i | s_i)

whose gradient is the REINFORCE update ``theta += alpha R grad log pi`` of ``000`` eq. 3.12.
"""

from __future__ import annotations

import torch

from agents.mlp import ApproxAgent, Batch, masked_logits
from agents.persistence import register


@register
class ReinforceApprox(ApproxAgent):
    """REINFORCE router: a softmax policy over the allowed actions, trained on raw returns.

    Acting samples from the policy (REINFORCE explores by its own stochasticity, ``000``
    3.1.3.2); greedy mode takes the most probable allowed action.

    Arguments: those of :class:`~agents.mlp.ApproxAgent` (``lr``: of the policy network).
    """

    state_names = (*ApproxAgent.state_names, "policy_net", "optimizer")
    renamed_state = {"policy": "policy_net"}

    def init_learned_state(self) -> None:
        """The policy network (logits over the actions) and its optimizer."""
        self.policy_net = self.make_net(self.num_actions)
        self.optimizer = self.make_optimizer([self.policy_net], self.lr)

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi(. | s)``: softmax of the policy logits over the allowed actions."""
        return torch.softmax(masked_logits(self.policy_net(states), masks), dim=-1)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """The policy logits."""
        return self.policy_net(states)

    def loss(self, batch: Batch) -> torch.Tensor:
        """``-sum_i R_i log pi(a_i|s_i)`` per route, averaged over the routes of the batch."""
        logits = masked_logits(self.policy_net(batch.states), batch.masks)
        log_pi = torch.log_softmax(logits, dim=-1)
        log_pi_taken = log_pi.gather(1, batch.actions[:, None]).squeeze(1)
        loss = -(batch.returns * log_pi_taken).sum()  # 000 7.1.2: -log P(a_k|pi) (r_f + sum r)
        return loss / batch.num_episodes
