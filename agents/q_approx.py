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

import torch

from agents.mlp import ApproxAgent, Batch, annealed, epsilon_greedy, masked_logits
from agents.persistence import register


@register
class QApprox(ApproxAgent):
    """Q-learning router with an MLP ``Q(s, .)`` and (optionally annealed) epsilon-greedy acting.

    :param activation_dim: size of the observation's ``activation``.
    :param num_tasks: number of tasks.
    :param max_depth: the longest route.
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate of the Q network. ``1e-3`` suits Adam; the seeds' sweep used plain
        SGD at ``1e-2`` (``000`` 5.2.3).
    :param hidden_dim: hidden units of the Q MLP.
    :param gamma: discount of the bootstrapped target.
    :param use_task: encode the task one-hot in the state.
    :param optimizer: ``"adam"`` (default) or ``"sgd"``.
    :param device: torch device of the network.
    :param seed: seed of the agent's random stream and initial parameters.
    :param epsilon: exploration probability (eq. 3.3), or the start of its schedule.
    :param epsilon_final: value reached after ``epsilon_decay_episodes`` learned routes (linear);
        ``None`` keeps ``epsilon`` constant.
    :param epsilon_decay_episodes: length of the linear schedule, in learned routes.
    """

    state_names = (*ApproxAgent.state_names, "q_net", "optimizer")

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
        epsilon: float = 0.1,
        epsilon_final: float | None = None,
        epsilon_decay_episodes: int = 0,
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
            epsilon=epsilon,
            epsilon_final=epsilon_final,
            epsilon_decay_episodes=epsilon_decay_episodes,
        )
        self.lr = lr
        self.epsilon = epsilon
        self.epsilon_final = epsilon_final
        self.epsilon_decay_episodes = epsilon_decay_episodes
        self.q_net = self.make_net(num_actions)
        self.optimizer = self.make_optimizer([self.q_net], lr)

    @property
    def current_epsilon(self) -> float:
        """The exploration probability after ``episodes_seen`` learned routes."""
        return annealed(
            self.epsilon, self.epsilon_final, self.epsilon_decay_episodes, int(self.episodes_seen)
        )

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
