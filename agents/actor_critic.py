"""Advantage actor-critic (AAC) with MLP actor and critic (``000`` 7.1.2, Mnih et al. 2016).

``000`` 7.1.2: "we offset REINFORCE with a value-learned critic and train the actor on the
advantage estimate". The critic ``V(s)`` regresses the Monte Carlo return and the actor follows
REINFORCE with ``R_i - V(s_i)`` in place of ``R_i``:

    L_critic = sum_i (R_i - V(s_i))^2
    L_actor  = - sum_i [R_i - V(s_i)]_detached log pi(a_i | s_i)

Actor and critic are separate MLPs (no shared trunk), as the seeds build every approximator as
its own two-layer MLP (``001`` Tables 3-4); it also keeps the critic's regression loss from
reshaping the policy's features.
"""

from __future__ import annotations

import torch

from agents.mlp import ApproxAgent, Batch, masked_logits
from agents.persistence import register


@register
class ActorCritic(ApproxAgent):
    """Advantage actor-critic router: softmax policy MLP plus a separate state-value MLP.

    Acting samples from the policy; greedy mode takes the most probable allowed action.

    Arguments: those of :class:`~agents.mlp.ApproxAgent` (``lr``: of actor and critic).
    """

    state_names = (*ApproxAgent.state_names, "actor", "critic", "optimizer")

    def init_learned_state(self) -> None:
        """The actor (logits over the actions), the critic (a state value) and one optimizer."""
        self.actor = self.make_net(self.num_actions)
        self.critic = self.make_net(1)
        self.optimizer = self.make_optimizer([self.actor, self.critic], self.lr)

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi(. | s)``: softmax of the actor's logits over the allowed actions."""
        return torch.softmax(masked_logits(self.actor(states), masks), dim=-1)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """The actor's logits."""
        return self.actor(states)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor loss, critic loss)`` per route, averaged over the routes of the batch."""
        values = self.critic(batch.states).squeeze(1)
        advantages = (batch.returns - values).detach()  # the critic is a baseline, not a target
        log_pi = torch.log_softmax(masked_logits(self.actor(batch.states), batch.masks), dim=-1)
        log_pi_taken = log_pi.gather(1, batch.actions[:, None]).squeeze(1)
        actor_loss = -(advantages * log_pi_taken).sum()  # -(R_i - V(s_i)) log pi(a_i|s_i)
        critic_loss = ((batch.returns - values) ** 2).sum()  # (R_i - V(s_i))^2
        return actor_loss / batch.num_episodes, critic_loss / batch.num_episodes

    def loss(self, batch: Batch) -> torch.Tensor:
        """Actor loss plus critic loss (their parameters are disjoint, so the sum trains both)."""
        actor_loss, critic_loss = self.losses(batch)
        return actor_loss + critic_loss
