"""The agent protocol shared by every router, and episodes.

An agent (a router) chooses actions from observations and learns from whole routes:

* ``act(obs, info) -> int``: one action; ``info["action_mask"]`` marks the allowed actions.
* ``act_batch(obs, masks) -> np.ndarray``: many states at once (``obs`` a dict of stacked
  arrays, as a Gymnasium vector env returns them).
* ``learn(episode)`` / ``learn_batch(episodes)``: update from finished routes.
* ``greedy``: when ``True`` the agent acts without exploration (evaluation).
* ``seed=``: every agent owns its random stream (``self.rng``); two agents built with different
  seeds never share draws.

Agents are saved with :func:`agents.save` as plain tensors plus a JSON description, and loaded
with ``torch.load(weights_only=True)``: loading never executes code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch


@dataclass
class Episode:
    """One finished route, as the agent saw it.

    Attributes:
        observations: the observation at each decision.
        actions: the action taken at each decision.
        rewards: the reward received after each action; the last includes the final reward.
        infos: the info that came with each decision's observation (holds ``action_mask``).
        final_info: the info returned when the route ended (``correct``, ``final_reward``...).
    """

    observations: list[Mapping[str, Any]]
    actions: list[int]
    rewards: list[float]
    infos: list[Mapping[str, Any]] = field(default_factory=list)
    final_info: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (len(self.observations) == len(self.actions) == len(self.rewards)):
            raise ValueError(
                "an episode needs one observation, action and reward per decision; got "
                f"{len(self.observations)} observations, {len(self.actions)} actions, "
                f"{len(self.rewards)} rewards"
            )
        if not self.actions:
            raise ValueError("an episode needs at least one decision")

    def __len__(self) -> int:
        return len(self.actions)

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """``R_i = r_final + sum_{j>=i} gamma^(j-i) r_j`` for every decision ``i`` (DESIGN 4).

        The final reward is not discounted (``001`` Algorithm 3); it is read from
        ``final_info["final_reward"]`` when present and otherwise treated as part of the last
        reward (identical when ``gamma = 1``).
        """
        rewards = np.asarray(self.rewards, dtype=np.float64)
        final = 0.0
        if self.final_info is not None and "final_reward" in self.final_info:
            final = float(self.final_info["final_reward"])
            rewards = rewards.copy()
            rewards[-1] -= final
        out = np.empty_like(rewards)
        running = 0.0
        for i in range(len(rewards) - 1, -1, -1):
            running = rewards[i] + gamma * running
            out[i] = running
        return out + final


class Agent:
    """Base class of the routers: seeding, greedy mode, batch defaults, saving.

    Subclasses implement :meth:`act` and :meth:`learn`, and list in :attr:`state_names` the
    attributes (NumPy arrays or torch modules) that make up their learned state. The
    constructor arguments are recorded in ``self.config`` by :meth:`_remember`.

    Args:
        seed: seed of the agent's own random stream.
    """

    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.greedy = False
        self.config: dict[str, Any] = {}

    def _remember(self, **config: Any) -> None:
        """Record the constructor arguments so :func:`agents.load` can rebuild the agent."""
        self.config = {**config, "seed": self.seed}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Agent:
        """Build an agent from the arguments recorded in ``config``."""
        return cls(**config)

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """Choose an action for one observation; ``info["action_mask"]`` marks allowed ones."""
        raise NotImplementedError

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """Choose actions for a batch of states (default: one :meth:`act` call per state)."""
        count = len(masks)
        actions = np.empty(count, dtype=np.int64)
        for i in range(count):
            single = {key: value[i] for key, value in obs.items()}
            actions[i] = self.act(single, {"action_mask": masks[i]})
        return actions

    def learn(self, episode: Episode) -> None:
        """Update from one finished route."""
        raise NotImplementedError

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Update from several finished routes (default: in order, one at a time)."""
        for episode in episodes:
            self.learn(episode)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Learned state as tensors, plus the random stream, for :func:`agents.save`."""
        state: dict[str, Any] = {}
        for name in self.state_names:
            value = getattr(self, name)
            if isinstance(value, torch.nn.Module | torch.optim.Optimizer):
                state[name] = value.state_dict()
            else:
                state[name] = torch.as_tensor(np.asarray(value))
        state["__rng__"] = json.dumps(self.rng.bit_generator.state)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for name in self.state_names:
            current = getattr(self, name)
            if isinstance(current, torch.nn.Module | torch.optim.Optimizer):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name].numpy().astype(np.asarray(current).dtype))
        self.rng.bit_generator.state = json.loads(state["__rng__"])


def masked_choice(rng: np.random.Generator, probabilities: np.ndarray, mask: np.ndarray) -> int:
    """Sample an action from ``probabilities`` restricted to the allowed actions of ``mask``."""
    p = np.where(np.asarray(mask) > 0, probabilities, 0.0)
    total = p.sum()
    if total <= 0:
        allowed = np.flatnonzero(mask)
        if allowed.size == 0:
            raise ValueError("no action is allowed by the mask")
        return int(rng.choice(allowed))
    return int(rng.choice(p.size, p=p / total))


def masked_argmax(values: np.ndarray, mask: np.ndarray) -> int:
    """The allowed action with the largest value (lowest index on ties)."""
    allowed = np.asarray(mask) > 0
    if not allowed.any():
        raise ValueError("no action is allowed by the mask")
    return int(np.argmax(np.where(allowed, values, -np.inf)))
