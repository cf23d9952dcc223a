"""Function approximators for routers, and the base class of the approximate agents.

Every approximate router in the seeds is a two-layer MLP with a hidden dimension of 64
(``001`` Tables 3-4, ``000`` 5.2.2). Its input is the routing state ``s = (h, t, d)`` encoded as
``concat(h, one_hot(t), one_hot(d))`` (``000`` 5.2.2: "approximation routers do not [have a
separate table per depth]. To also give the router access to the depth ... the latest activation
is augmented by concatenating a 1-hot representation of the depth"; ``001`` 7.3 gives the task
one-hot). One MLP over all depths follows ``000``; ``001`` 7.3 keeps one MLP per depth instead.

:class:`ApproxAgent` holds what the algorithms share: the state encoding, seeded parameter
initialisation, masked acting (single and batched), collating episodes into one batch and the
optimizer step. Each algorithm file only defines its networks, its behaviour policy and its loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.base import Agent, Episode
from agents.tabular import non_greedy

OPTIMIZERS = ("adam", "sgd")


def encode_states(
    activation: np.ndarray,
    task: np.ndarray,
    depth: np.ndarray,
    num_tasks: int,
    max_depth: int,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Encode routing states as ``concat(h, one_hot(t), one_hot(d))`` (``000`` 5.2.2, ``001`` 7.3).

    :param activation: activations ``h``, shape ``(B, activation_dim)``.
    :param task: task ids ``t``, shape ``(B,)``, in ``[0, num_tasks)``.
    :param depth: depths ``d``, shape ``(B,)``, in ``[0, max_depth]`` (the env's observation
        space is ``Discrete(max_depth + 1)``, so the depth one-hot has ``max_depth + 1`` entries).
    :param num_tasks: number of tasks; ``0`` leaves the task out of the encoding (routing without
        meta-information, ``000`` 7.1.3).
    :param max_depth: the longest route.
    :param device: device of the returned tensor.
    :return: float32 tensor of shape ``(B, activation_dim + num_tasks + max_depth + 1)``.
    """
    h = np.asarray(activation, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"activation must have shape (batch, activation_dim), got {h.shape}")
    t = np.asarray(task, dtype=np.int64).reshape(-1)
    d = np.asarray(depth, dtype=np.int64).reshape(-1)
    if not (len(t) == len(d) == len(h)):
        raise ValueError(
            f"batch sizes differ: {len(h)} activations, {len(t)} tasks, {len(d)} depths"
        )
    if d.size and (d.min() < 0 or d.max() > max_depth):
        raise ValueError(f"depth must lie in [0, {max_depth}], got {d.min()}..{d.max()}")
    parts = [h]
    if num_tasks > 0:
        if t.size and (t.min() < 0 or t.max() >= num_tasks):
            raise ValueError(f"task must lie in [0, {num_tasks}), got {t.min()}..{t.max()}")
        parts.append(np.eye(num_tasks, dtype=np.float32)[t])
    parts.append(np.eye(max_depth + 1, dtype=np.float32)[d])
    return torch.from_numpy(np.concatenate(parts, axis=1)).to(device)


class MLP(nn.Module):
    """Two-layer perceptron ``Linear -> ReLU -> Linear``, the seeds' router approximator.

    Parameters are drawn from ``generator`` with the same distribution as ``nn.Linear``'s
    default (uniform in ``+-1/sqrt(fan_in)``), so building an agent neither reads nor advances
    the global torch random state.

    :param in_dim: input size (the encoded state).
    :param out_dim: output size (one value or logit per action, or 1 for a state value).
    :param hidden: hidden units; the seeds use 64.
    :param generator: source of the initial parameters; ``None`` seeds a fresh generator from
        the operating system.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int = 64, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        # nn.Linear draws its default init from the global stream; fork it so that draw is undone.
        with torch.random.fork_rng(devices=[]):
            self.layers = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
            )
        with torch.no_grad():
            for layer in (self.layers[0], self.layers[2]):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map encoded states ``(B, in_dim)`` to outputs ``(B, out_dim)``."""
        return self.layers(x)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set the logits of disallowed actions to ``-inf`` so they get exactly zero probability."""
    return logits.masked_fill(~mask, float("-inf"))


def masked_greedy(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Index of the largest allowed value per row; ties go to the lowest index."""
    return masked_logits(values, mask).argmax(dim=-1)


def epsilon_greedy(values: torch.Tensor, mask: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Action probabilities of epsilon-greedy selection over the allowed actions (``000`` eq. 3.3).

    The greedy action gets ``1 - epsilon`` and every other allowed action ``epsilon / (n - 1)``,
    with ``n`` the number of allowed actions (all mass on the greedy action when ``n = 1``).
    Ties go to the lowest index rather than a random one: exact ties do not occur between the
    real-valued outputs of an approximator.
    """
    greedy = nn.functional.one_hot(masked_greedy(values, mask), values.shape[-1]).bool()
    others = (mask & ~greedy).to(values.dtype)
    n_others = others.sum(dim=-1, keepdim=True)
    explore = torch.where(n_others > 0, others * epsilon / n_others.clamp(min=1), 0.0)
    exploit = greedy.to(values.dtype) * torch.where(n_others > 0, 1.0 - epsilon, 1.0)
    return exploit + explore


@dataclass
class Batch:
    """The decisions of one or more routes, concatenated in order, as tensors.

    :param states: encoded states ``s_i``, shape ``(N, in_dim)``.
    :param actions: actions ``a_i``, shape ``(N,)``.
    :param masks: allowed actions at ``s_i`` (``True`` = allowed), shape ``(N, num_actions)``.
    :param rewards: rewards ``r_i`` (the last of a route includes the final reward).
    :param returns: returns ``R_i`` (:meth:`agents.base.Episode.returns`).
    :param next_index: row of ``s_{i+1}`` in ``states``; a route's last decision points at itself.
    :param terminal: ``True`` at the last decision of each route.
    :param num_episodes: number of routes in the batch.
    """

    states: torch.Tensor
    actions: torch.Tensor
    masks: torch.Tensor
    rewards: torch.Tensor
    returns: torch.Tensor
    next_index: torch.Tensor
    terminal: torch.Tensor
    num_episodes: int


@dataclass(eq=False)
class ApproxAgent(Agent):
    """Base class of the routers whose policy or values are MLPs over the encoded state.

    A subclass is a dataclass: its fields are its own hyperparameters, after the ones below, and
    the generated constructor records them all for :func:`agents.load`. It implements
    :meth:`init_learned_state` (its networks, from :meth:`make_net`, and ``self.optimizer``, from
    :meth:`make_optimizer`), :meth:`behaviour` (the exploring policy), :meth:`greedy_scores`
    (what greedy mode maximises) and :meth:`loss`.

    Losses sum over the decisions of a route (``000`` Alg. 7.1 cumulates them per trajectory) and
    average over the routes of a batch, so :meth:`learn_batch` keeps the per-route scale whatever
    the batch size.

    :param activation_dim: size of the observation's ``activation``.
    :param num_tasks: number of tasks (the range of the observation's ``task``).
    :param max_depth: the longest route (the observation's ``depth`` lies in ``[0, max_depth]``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: learning rate of the networks. ``1e-3`` suits Adam; the seeds' sweep used plain
        SGD at ``1e-2`` (``000`` 5.2.3).
    :param hidden_dim: hidden units of every MLP.
    :param gamma: discount of the returns and of bootstrapped targets.
    :param use_task: encode the task one-hot (meta-information); ``False`` routes on the
        activation and depth alone.
    :param optimizer: ``"adam"`` or ``"sgd"`` (plain, no momentum). Adam at ``lr=1e-3`` (the
        defaults) is a robust setting for small MLPs; the seeds' experiments trained with plain
        SGD at ``1e-2`` (``000`` 5.2.3, 7.4.4), which ``optimizer="sgd", lr=1e-2`` reproduces.
    :param device: torch device of the networks.
    :param seed: seed of the agent's random stream; parameter initialisation is drawn from it too.

    ``episodes_seen`` counts the routes learned from (it drives epsilon schedules).
    """

    activation_dim: int
    num_tasks: int
    max_depth: int
    num_actions: int
    lr: float = 1e-3
    hidden_dim: int = 64
    gamma: float = 1.0
    use_task: bool = True
    optimizer: InitVar[str] = "adam"
    device: InitVar[str] = "cpu"
    seed: int | None = None

    state_names = ("episodes_seen",)

    def __post_init__(self, optimizer: str, device: str) -> None:
        super().__init__(self.seed)
        hyperparameters = {field.name: getattr(self, field.name) for field in fields(self)}
        self._remember(**hyperparameters, optimizer=optimizer, device=device)
        for name in ("activation_dim", "num_tasks", "max_depth", "num_actions", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.optimizer_name = optimizer
        self.device = torch.device(device)
        self.in_dim = (
            self.activation_dim + (self.num_tasks if self.use_task else 0) + self.max_depth + 1
        )
        self.episodes_seen = 0
        # Draw the init seed from the agent's own stream: one `seed` fixes acting and weights.
        self._init_generator = torch.Generator().manual_seed(int(self.rng.integers(2**63)))
        self.init_learned_state()

    def init_learned_state(self) -> None:
        """Check the hyperparameters, build the networks and ``self.optimizer``; called once by
        the constructor."""
        raise NotImplementedError

    # ------------------------------------------------------------------ building

    def make_net(self, out_dim: int) -> MLP:
        """A fresh MLP from the encoded state to ``out_dim`` outputs, seeded by the agent."""
        return MLP(self.in_dim, out_dim, self.hidden_dim, self._init_generator).to(self.device)

    def make_optimizer(self, modules: Iterable[nn.Module], lr: float) -> torch.optim.Optimizer:
        """One optimizer over the parameters of ``modules``.

        The networks of an agent have disjoint parameters, so one optimizer minimising the sum of
        their losses updates each network exactly as separate optimizers would.
        """
        params = [p for module in modules for p in module.parameters()]
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=lr)
        return torch.optim.SGD(params, lr=lr)

    # ------------------------------------------------------------------ encoding

    def encode(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Encode a dict of stacked observations (``activation``, ``task``, ``depth``)."""
        activation = np.asarray(obs["activation"], dtype=np.float32)
        if activation.ndim != 2 or activation.shape[1] != self.activation_dim:
            raise ValueError(
                f"expected activations of shape (batch, {self.activation_dim}), "
                f"got {activation.shape}"
            )
        return encode_states(
            activation,
            obs["task"],
            obs["depth"],
            self.num_tasks if self.use_task else 0,
            self.max_depth,
            self.device,
        )

    def _mask_tensor(self, masks: np.ndarray) -> torch.Tensor:
        allowed = np.asarray(masks).reshape(-1, self.num_actions) > 0
        if not allowed.any(axis=1).all():
            raise ValueError("no action is allowed by the mask of some state")
        return torch.as_tensor(allowed, device=self.device)

    # ------------------------------------------------------------------ acting

    def behaviour(self, states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, num_actions)`` of the exploring policy; zero on masked actions."""
        raise NotImplementedError

    def greedy_scores(self, states: torch.Tensor) -> torch.Tensor:
        """Per-action scores ``(B, num_actions)`` whose allowed argmax is the greedy action."""
        raise NotImplementedError

    def policy_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, num_actions)`` of the actions :meth:`act_batch` would take.

        In greedy mode all mass is on the greedy action.

        :param obs: dict of stacked observations.
        :param masks: allowed actions, shape ``(B, num_actions)``, nonzero = allowed.
        """
        states, allowed = self.encode(obs), self._mask_tensor(masks)
        with torch.no_grad():
            if self.greedy:
                greedy = masked_greedy(self.greedy_scores(states), allowed)
                probs = nn.functional.one_hot(greedy, self.num_actions).double()
            else:
                probs = self.behaviour(states, allowed).double()
        return probs.cpu().numpy()

    def greedy_batchable(self) -> bool:
        """``True``: the greedy action is the allowed argmax of each state's own scores, with no
        random draw (:meth:`act_batch`)."""
        return True

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Whether each action was taken non-greedily (``000`` 7.4.2): not a largest
        :meth:`greedy_scores` entry among the allowed actions.

        :param obs: dict of stacked observations.
        :param masks: allowed actions, shape ``(B, num_actions)``, nonzero = allowed.
        :param actions: the actions taken, shape ``(B,)``.
        :return: booleans, shape ``(B,)``.
        """
        with torch.no_grad():
            scores = self.greedy_scores(self.encode(obs)).double().cpu().numpy()
        return non_greedy(scores, masks, actions)

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """Actions for a batch of states: one forward pass, one ``rng.random(B)`` draw.

        :param obs: dict of stacked observations (as a Gymnasium vector env returns them).
        :param masks: allowed actions, shape ``(B, num_actions)``, nonzero = allowed.
        :return: int64 actions, shape ``(B,)``.
        """
        probs = self.policy_batch(obs, masks)
        if self.greedy:
            return probs.argmax(axis=1)
        # Inverse CDF: the action is the number of cumulative masses at or below u * total.
        cdf = np.cumsum(probs, axis=1)
        u = self.rng.random(len(probs))[:, None] * cdf[:, -1:]
        actions = (cdf <= u).sum(axis=1)
        # Rounding could push u onto the last boundary; stay on an action with mass.
        last_possible = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
        return np.minimum(actions, last_possible).astype(np.int64)

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """One action for one observation; ``info["action_mask"]`` marks the allowed actions.

        :param obs: ``{"activation", "task", "depth"}`` of one state.
        :param info: the step's info; without ``action_mask`` every action is allowed.
        """
        batch = {key: np.asarray(value)[None] for key, value in obs.items()}
        mask = info.get("action_mask", np.ones(self.num_actions, dtype=np.int8))
        return int(self.act_batch(batch, np.asarray(mask)[None])[0])

    # ------------------------------------------------------------------ learning

    def collate(self, episodes: Sequence[Episode]) -> Batch:
        """Concatenate the decisions of ``episodes`` into one :class:`Batch`."""
        if not episodes:
            raise ValueError("learn_batch needs at least one episode")
        observations, actions, masks, rewards, returns = [], [], [], [], []
        next_index, terminal = [], []
        for episode in episodes:
            start = len(actions)
            n = len(episode)
            for i in range(n):
                info = episode.infos[i] if i < len(episode.infos) else {}
                masks.append(info.get("action_mask", np.ones(self.num_actions, dtype=np.int8)))
                next_index.append(start + i + 1 if i + 1 < n else start + i)
                terminal.append(i + 1 == n)
            observations.extend(episode.observations)
            actions.extend(int(a) for a in episode.actions)
            rewards.extend(episode.rewards)
            returns.extend(episode.returns(self.gamma))
        stacked = {
            key: np.stack([np.asarray(o[key]) for o in observations])
            for key in ("activation", "task", "depth")
        }
        allowed = self._mask_tensor(np.stack(masks))
        action_tensor = torch.as_tensor(actions, dtype=torch.long, device=self.device)
        if action_tensor.min() < 0 or action_tensor.max() >= self.num_actions:
            raise ValueError(f"episode actions must lie in [0, {self.num_actions})")
        taken_allowed = allowed.gather(1, action_tensor[:, None]).squeeze(1)
        if not taken_allowed.all():
            step = int(torch.nonzero(~taken_allowed)[0])
            raise ValueError(
                f"decision {step} of the batch took action {actions[step]}, which its mask forbids"
            )
        as_float = {"dtype": torch.float32, "device": self.device}
        return Batch(
            states=self.encode(stacked),
            actions=action_tensor,
            masks=allowed,
            rewards=torch.as_tensor(np.asarray(rewards, dtype=np.float64), **as_float),
            returns=torch.as_tensor(np.asarray(returns, dtype=np.float64), **as_float),
            next_index=torch.as_tensor(next_index, dtype=torch.long, device=self.device),
            terminal=torch.as_tensor(terminal, dtype=torch.bool, device=self.device),
            num_episodes=len(episodes),
        )

    def loss(self, batch: Batch) -> torch.Tensor:
        """The scalar the algorithm minimises on ``batch``."""
        raise NotImplementedError

    def learn(self, episode: Episode) -> None:
        """One optimizer step on one finished route."""
        self.learn_batch([episode])

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """One optimizer step on all decisions of ``episodes`` together."""
        loss = self.loss(self.collate(episodes))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{type(self).__name__} loss is {loss.item()}")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        # Counted after the loss: epsilon schedules must see the value the routes were acted with.
        self.episodes_seen = int(self.episodes_seen) + len(episodes)
