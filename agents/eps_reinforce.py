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

import torch

from agents.mlp import ApproxAgent, Batch, annealed, masked_greedy, masked_logits
from agents.persistence import register


@register
class EpsilonReinforce(ApproxAgent):
    """REINFORCE router that acts epsilon-greedily on its policy and corrects by importance weights.

    Greedy mode takes the most probable allowed action of ``pi``.

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
    :param epsilon: probability of sampling from ``pi`` instead of taking its argmax (eq. 7.3),
        or the start of its schedule.
    :param epsilon_final: value reached after ``epsilon_decay_episodes`` learned routes (linear);
        ``None`` keeps ``epsilon`` constant.
    :param epsilon_decay_episodes: length of the linear schedule, in learned routes.
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
        self.policy = self.make_net(num_actions)
        self.optimizer = self.make_optimizer([self.policy], lr)

    @property
    def current_epsilon(self) -> float:
        """The exploration probability after ``episodes_seen`` learned routes."""
        return annealed(
            self.epsilon, self.epsilon_final, self.epsilon_decay_episodes, int(self.episodes_seen)
        )

    def mix(self, pi: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi_eps`` of eq. 7.3 from the policy ``pi`` (zero on masked actions)."""
        greedy = torch.nn.functional.one_hot(masked_greedy(pi, masks), self.num_actions)
        eps = self.current_epsilon
        return (1 - eps) * greedy.to(pi.dtype) + eps * pi  # eq. 7.3

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``pi_eps(s, .)`` of eq. 7.3."""
        return self.mix(torch.softmax(masked_logits(self.policy(states), masks), dim=-1), masks)

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """The policy logits."""
        return self.policy(states)

    def importance_weights(self, pi: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``pi(a_i|s_i) / pi_eps(a_i|s_i)`` for the actions taken, without gradient."""
        pi = pi.detach()
        mu = self.mix(pi, batch.masks)
        taken = batch.actions[:, None]
        return (pi.gather(1, taken) / mu.gather(1, taken)).squeeze(1)

    def loss(self, batch: Batch) -> torch.Tensor:
        """``-sum_i w_i R_i log pi(a_i|s_i)`` per route, averaged over the routes of the batch."""
        log_pi = torch.log_softmax(masked_logits(self.policy(batch.states), batch.masks), dim=-1)
        weights = self.importance_weights(log_pi.exp(), batch)
        log_pi_taken = log_pi.gather(1, batch.actions[:, None]).squeeze(1)
        return -(weights * batch.returns * log_pi_taken).sum() / batch.num_episodes
