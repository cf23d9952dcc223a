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

    :param activation_dim: size of the observation's ``activation``.
    :param num_tasks: number of tasks.
    :param max_depth: the longest route.
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate of the policy. ``1e-3`` suits Adam; the seeds' sweep used plain SGD
        at ``1e-2`` (``000`` 5.2.3).
    :param hidden_dim: hidden units of the policy MLP.
    :param gamma: discount of the returns.
    :param use_task: encode the task one-hot in the state.
    :param optimizer: ``"adam"`` (default) or ``"sgd"``.
    :param device: torch device of the network.
    :param seed: seed of the agent's random stream and initial parameters.
    """

    state_names = (*ApproxAgent.state_names, "policy", "optimizer")

    def __init__(
        self,
        activation_dim: int,
        num_tasks: int,
        max_depth: int,
        num_actions: int,
        lr: float = 1e-3,
        hidden_dim: int = 64,
        gamma: float = 1.0,
        use_task: bool = True,
        optimizer: str = "adam",
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            activation_dim,
            num_tasks,
            max_depth,
            num_actions,
            hidden_dim=hidden_dim,
            gamma=gamma,
            use_task=use_task,
            optimizer=optimizer,
            device=device,
            seed=seed,
            lr=lr,
        )
        self.lr = lr
        self.policy = self.make_net(num_actions)
        self.optimizer = self.make_optimizer([self.policy], lr)

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi(. | s)``: softmax of the policy logits over the allowed actions."""
        return torch.softmax(masked_logits(self.policy(states), masks), dim=-1)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """The policy logits."""
        return self.policy(states)

    def loss(self, batch: Batch) -> torch.Tensor:
        """``-sum_i R_i log pi(a_i|s_i)`` per route, averaged over the routes of the batch."""
        log_pi = torch.log_softmax(masked_logits(self.policy(batch.states), batch.masks), dim=-1)
        log_pi_taken = log_pi.gather(1, batch.actions[:, None]).squeeze(1)
        loss = -(batch.returns * log_pi_taken).sum()  # 000 7.1.2: -log P(a_k|pi) (r_f + sum r)
        return loss / batch.num_episodes
