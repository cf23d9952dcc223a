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

import torch

from agents.mlp import ApproxAgent, Batch, annealed, epsilon_greedy
from agents.persistence import register


@register
class AdvantageApprox(ApproxAgent):
    """Advantage-learning router: separate MLPs for ``V(s)`` and ``A(s, .)``, epsilon-greedy on A.

    :param activation_dim: size of the observation's ``activation``.
    :param num_tasks: number of tasks.
    :param max_depth: the longest route.
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate ``alpha`` of both estimators. ``1e-3`` suits Adam; the seeds' sweep
        used plain SGD at ``1e-2`` (``000`` 5.2.3).
    :param hidden_dim: hidden units of each MLP.
    :param gamma: discount of the returns (``1`` reproduces eq. 7.1-7.2).
    :param use_task: encode the task one-hot in the state.
    :param optimizer: ``"adam"`` (default) or ``"sgd"``.
    :param device: torch device of the networks.
    :param seed: seed of the agent's random stream and initial parameters.
    :param epsilon: exploration probability (eq. 3.3), or the start of its schedule.
    :param epsilon_final: value reached after ``epsilon_decay_episodes`` learned routes (linear);
        ``None`` keeps ``epsilon`` constant.
    :param epsilon_decay_episodes: length of the linear schedule, in learned routes.
    """

    state_names = (*ApproxAgent.state_names, "value", "advantage", "optimizer")

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
        self.value = self.make_net(1)
        self.advantage = self.make_net(num_actions)
        self.optimizer = self.make_optimizer([self.value, self.advantage], lr)

    @property
    def current_epsilon(self) -> float:
        """The exploration probability after ``episodes_seen`` learned routes."""
        return annealed(
            self.epsilon, self.epsilon_final, self.epsilon_decay_episodes, int(self.episodes_seen)
        )

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
