"""Weighted Policy Learner with function approximation (``000`` Algorithm 7.1).

WPL (Abdallah & Lesser 2008; tabular: ``001`` Alg. 3, ``000`` Alg. 5.1) in the version
``000`` 7.1.1 designed for approximators. Per decision ``i`` of a route, Algorithm 7.1 reads:

    line 6   R_i = r_final + sum_{j>=i} gamma^(j-i) r_j
    line 8   L_critic += MSE(Rhat(s), R_i)
    line 10  Delta = R_i - Rhat(s)
    line 11-14  weight Delta by the policy (below)
    line 15  pi_target(s) = simplex-projection(pi(s) + onehot(a_i) Delta)
    line 17  L_actor += MSE(pi(s), pi_target(s))
    line 18  minimize L_critic + L_actor

There is no learning rate in line 15: the target moves by the full weighted ``Delta`` and the
optimizer's learning rate sets how far the actor moves toward it. The target is a constant
(detached): only the actor's current ``pi(s)`` in line 17 carries gradient, and ``Delta`` uses the
critic as a baseline, not as a path for the actor's gradient.

Weighting (DESIGN 4): ``"original"`` (default; Abdallah & Lesser and ``001`` 7.4's prose) scales
``Delta > 0`` by ``1 - pi(a)`` and ``Delta <= 0`` by ``pi(a)``, so learning slows as the policy
nears a pure strategy. ``"printed"`` is what lines 11-14 of the box print (``Delta < 0`` by
``1 - pi(a)``, otherwise by ``pi(a)``), the swap that the seeds' boxes share.

Simplex projection (DESIGN 4): clip to ``[0, 1]`` then divide by the sum. If every entry clips to
zero the target is uniform over the allowed actions, the point of the simplex nearest to zero.

The policy ``pi(s)`` is the softmax of an MLP over the allowed actions; the critic ``Rhat(s)`` is
a separate MLP, as Algorithm 7.1 takes "a critic approximator" and "a policy approximator". MSE
over the policy averages over the ``num_actions`` entries (masked entries are 0 in both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.mlp import ApproxAgent, Batch, masked_logits
from agents.persistence import register

WEIGHTINGS = ("original", "printed")


@register
@dataclass(eq=False)
class WPLApprox(ApproxAgent):
    """WPL router with an MLP policy and an MLP critic (``000`` Algorithm 7.1).

    Acting samples from ``pi(s)``; greedy mode takes the most probable allowed action.

    Arguments: those of :class:`~agents.mlp.ApproxAgent` (``lr``: of actor and critic), and:

    :param weighting: ``"original"`` (default) or ``"printed"``, see the module docstring.
    """

    weighting: str = "original"

    state_names = (*ApproxAgent.state_names, "actor", "critic", "optimizer")

    def init_learned_state(self) -> None:
        """Check ``weighting``; the actor (logits over the actions), the critic, one optimizer."""
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        self.actor = self.make_net(self.num_actions)
        self.critic = self.make_net(1)
        self.optimizer = self.make_optimizer([self.actor, self.critic], self.lr)

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """WPL acts from its policy ``pi(. | s)``: the softmax of the actor's logits over the
        allowed actions."""
        return torch.softmax(masked_logits(self.actor(states), masks), dim=-1)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """The actor's logits."""
        return self.actor(states)

    def target_policy(
        self, pi: torch.Tensor, actions: torch.Tensor, delta: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """Lines 11-15 of Algorithm 7.1: weight ``delta`` and project ``pi + onehot(a) delta``.

        :param pi: current policies ``(N, num_actions)`` (zero on masked actions).
        :param actions: actions taken ``(N,)``.
        :param delta: ``R_i - Rhat(s_i)``, shape ``(N,)``.
        :param masks: allowed actions ``(N, num_actions)``, boolean.
        :return: target policies ``(N, num_actions)``, without gradient.
        """
        pi = pi.detach()
        delta = delta.detach()
        pi_taken = pi.gather(1, actions[:, None]).squeeze(1)
        if self.weighting == "original":
            weighted = torch.where(delta > 0, delta * (1 - pi_taken), delta * pi_taken)
        else:
            weighted = torch.where(delta < 0, delta * (1 - pi_taken), delta * pi_taken)
        onehot = torch.nn.functional.one_hot(actions, self.num_actions).to(pi.dtype)
        clipped = (pi + onehot * weighted[:, None]).clamp(0.0, 1.0)  # line 15
        total = clipped.sum(dim=1, keepdim=True)
        uniform = masks.to(pi.dtype) / masks.sum(dim=1, keepdim=True)
        return torch.where(total > 0, clipped / total.clamp(min=1e-12), uniform)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor loss, critic loss)`` per route, averaged over the routes of the batch."""
        estimates = self.critic(batch.states).squeeze(1)
        critic_loss = ((estimates - batch.returns) ** 2).sum()  # line 8: MSE(Rhat(s), R_i)
        delta = batch.returns - estimates.detach()  # line 10: Delta = R_i - Rhat(s)
        pi = self.behaviour(batch.states, batch.masks)
        target = self.target_policy(pi, batch.actions, delta, batch.masks)
        actor_loss = ((pi - target) ** 2).mean(dim=1).sum()  # line 17: MSE(pi(s), pi_target(s))
        return actor_loss / batch.num_episodes, critic_loss / batch.num_episodes

    def loss(self, batch: Batch) -> torch.Tensor:
        """Line 18: ``L_critic + L_actor``."""
        actor_loss, critic_loss = self.losses(batch)
        return actor_loss + critic_loss
