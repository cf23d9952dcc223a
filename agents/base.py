"""The agent protocol shared by every router, and episodes.

An agent (a router) chooses actions from observations and learns from whole routes:

* ``act(obs, info) -> int``: one action; ``info["action_mask"]`` marks the allowed actions.
* ``act_batch(obs, masks) -> np.ndarray``: many states at once (``obs`` a dict of stacked
  arrays, as a Gymnasium vector env returns them).
* ``learn(episode)`` / ``learn_batch(episodes)``: update from finished routes. Vector training
  hands ``learn_batch`` an :class:`EpisodeBatch`: a sequence of :class:`Episode` that also holds
  the routes as stacked arrays, which tabular agents read without a loop over the routes.
* ``greedy``: when ``True`` the agent acts without exploration (evaluation).
* ``exploratory(obs, masks, actions)``: which actions were exploratory, i.e. not greedy
  (``000`` 7.4.2), for the exploration squashing of ``RoutingEnv(squash_kappa=...)``;
  ``None`` from agents that cannot tell.
* ``greedy_batchable()``: whether greedy ``act_batch`` gives every state the action ``act``
  gives it alone, with no random draw and no memory between calls, so that an evaluation may
  route many samples at once (:func:`agents.evaluation.evaluate_router`).
* ``greedy_table(num_tasks, masks)``: the greedy action of every ``(task, depth)`` when that is
  all it depends on (the tabular routers), so that an evaluation knows every route before
  routing; ``None`` otherwise.
* ``seed=``: every agent owns its random stream (``self.rng``); two agents built with different
  seeds never share draws.

Agents are saved with :func:`agents.save` as plain tensors plus a JSON description, and loaded
with ``torch.load(weights_only=True)``: loading never executes code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload

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
        # Python floats: the float64 arithmetic of NumPy scalars, without their cost.
        rewards = np.asarray(self.rewards, dtype=np.float64).tolist()
        final = 0.0
        if self.final_info is not None and "final_reward" in self.final_info:
            final = float(self.final_info["final_reward"])
            rewards[-1] -= final
        out = [0.0] * len(rewards)
        running = 0.0
        for i in range(len(rewards) - 1, -1, -1):
            running = rewards[i] + gamma * running
            out[i] = running
        return np.array(out) + final


def route_path(info: Mapping[str, Any]) -> tuple[int, ...]:
    """The actions of a route, from its info's ``path`` (padded with -1 after the route)."""
    return tuple(int(action) for action in np.asarray(info["path"]) if action >= 0)


class EpisodeBatch(Sequence[Episode]):
    """Finished routes as arrays, one row per route, padded after each route's last decision.

    A vector env's steps already come as stacked arrays; keeping them stacked spares building an
    :class:`Episode` (with a dict per decision) for every route when the agent can learn from
    the arrays directly, as the tabular agents do (:func:`agents.tabular.decisions`). The batch
    is still a ``Sequence[Episode]``: indexing or iterating builds the episodes on demand, the
    same ones (same keys, values and types) as routing each sample alone would give, so every
    ``learn_batch`` accepts it. Slicing gives an :class:`EpisodeBatch`.

    Args:
        activation: ``(B, L, activation_dim)`` observed activations.
        task: ``(B, L)`` observed task ids.
        depth: ``(B, L)`` observed depths.
        action_mask: ``(B, L, num_actions)`` the mask that came with each decision.
        actions: ``(B, L)`` actions taken.
        rewards: ``(B, L)`` rewards received; the last of a route includes the final reward.
        lengths: ``(B,)`` decisions per route (at least 1, at most ``L``).
        final_info: end-of-route info as columns: each key maps to an array with one entry per
            route (``final_reward``, ``correct``, ``path``, ...).

    Entries after a route's last decision are padding: actions ``-1``, rewards ``0``.
    """

    def __init__(
        self,
        activation: np.ndarray,
        task: np.ndarray,
        depth: np.ndarray,
        action_mask: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        lengths: np.ndarray,
        final_info: Mapping[str, np.ndarray],
    ) -> None:
        self.activation = activation
        self.task = task
        self.depth = depth
        self.action_mask = action_mask
        self.actions = actions
        self.rewards = rewards
        self.lengths = lengths
        self.final_info = dict(final_info)
        self._info_lists: dict[str, list[Any]] | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> Episode: ...

    @overload
    def __getitem__(self, index: slice) -> EpisodeBatch: ...

    def __getitem__(self, index: int | slice) -> Episode | EpisodeBatch:
        if isinstance(index, slice):
            return EpisodeBatch(
                self.activation[index],
                self.task[index],
                self.depth[index],
                self.action_mask[index],
                self.actions[index],
                self.rewards[index],
                self.lengths[index],
                {key: column[index] for key, column in self.final_info.items()},
            )
        row = range(len(self))[index]  # negative indices and bounds, as a list's
        return self._episode(row)

    def _episode(self, row: int) -> Episode:
        if self._info_lists is None:
            # Python scalars (and row arrays for wider columns), as a single env's info holds.
            self._info_lists = {
                key: column.tolist() if column.ndim == 1 else list(column)
                for key, column in self.final_info.items()
            }
        length = int(self.lengths[row])
        activation = self.activation[row]
        tasks = self.task[row, :length].tolist()
        depths = self.depth[row, :length].tolist()
        masks = self.action_mask[row]
        return Episode(
            [
                {"activation": activation[i], "task": tasks[i], "depth": depths[i]}
                for i in range(length)
            ],
            self.actions[row, :length].tolist(),
            self.rewards[row, :length].tolist(),
            [{"action_mask": masks[i]} for i in range(length)],
            {key: values[row] for key, values in self._info_lists.items()},
        )

    @property
    def valid(self) -> np.ndarray:
        """``(B, L)`` boolean: which entries are decisions (not padding)."""
        return np.arange(self.actions.shape[1]) < self.lengths[:, None]

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """``(B, L)`` returns ``R_i``, each row equal to :meth:`Episode.returns` of its route
        (zero on padding)."""
        rewards = np.asarray(self.rewards, dtype=np.float64)
        final = np.zeros(len(self))
        if "final_reward" in self.final_info:
            final = np.asarray(self.final_info["final_reward"], dtype=np.float64)
            rewards = rewards.copy()
            rewards[np.arange(len(self)), self.lengths - 1] -= final
        out = np.empty_like(rewards)
        running = np.zeros(len(self))
        # Backwards over the columns with the arithmetic of Episode.returns, so the values are
        # identical; padding (reward 0) keeps the running sum at 0 until a route's last step.
        for i in range(rewards.shape[1] - 1, -1, -1):
            running = rewards[:, i] + gamma * running
            out[:, i] = running
        return np.where(self.valid, out + final[:, None], 0.0)

    def total_rewards(self) -> np.ndarray:
        """Each route's ``sum(episode.rewards)``, added in the same order."""
        total = np.zeros(len(self))
        for i in range(self.rewards.shape[1]):
            total = total + self.rewards[:, i]
        return total


class Agent:
    """Base class of the routers: seeding, greedy mode, batch defaults, saving.

    Subclasses implement :meth:`act` and :meth:`learn`, and list in :attr:`state_names` the
    attributes (NumPy arrays or torch modules) that make up their learned state. The
    constructor arguments are recorded in ``self.config`` by :meth:`_remember`.

    Args:
        seed: seed of the agent's own random stream.
    """

    state_names: ClassVar[tuple[str, ...]] = ()
    #: Saved-state keys that earlier versions wrote, and the names in :attr:`state_names` that
    #: hold them now, so that their checkpoints still load.
    renamed_state: ClassVar[Mapping[str, str]] = {}
    #: Whether the router can route several samples at once (``act_batch`` on a vector env's
    #: sub-environments, each at its own point of a route); a router that keeps per-route
    #: state between ``act`` calls says False and trains on the single-sample env.
    routes_in_batches: ClassVar[bool] = True

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

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray | None:
        """Which of ``actions``, taken in the batch of states ``obs`` with the allowed actions
        ``masks``, were exploratory: ``(B,)`` booleans, or ``None`` when the agent cannot tell
        (this default).

        Exploratory means taken non-greedily (``000`` 7.4.2): not an action greedy mode could
        take there. For epsilon-greedy agents that is the random branch choosing a
        non-greedy action; for stochastic policies, an action below the policy's largest
        probability. Ties with the greedy action count as greedy. :func:`agents.train`
        reports it to environments that squash module updates by exploration
        (``RoutingEnv(squash_kappa=...)``, ``000`` eq. 7.4).
        """
        return None

    def greedy_batchable(self) -> bool:
        """Whether, in greedy mode, :meth:`act_batch` gives every state of a batch the action
        :meth:`act` gives that state alone, and acting draws nothing and remembers nothing
        that a later action depends on. Then a greedy evaluation may route many samples
        together and get the routes of routing them one by one. ``False`` by default: an agent
        declares it. Stricter than :attr:`routes_in_batches`: a random router routes in
        batches, but which action each state draws depends on the order of the draws."""
        return False

    def greedy_table(self, num_tasks: int, masks: np.ndarray) -> np.ndarray | None:
        """The greedy action of every decision state, when in greedy mode it depends on the
        task and depth alone (not on the activation, earlier decisions or random draws).

        Args:
            num_tasks: the tasks to cover, ``0 .. num_tasks - 1``.
            masks: boolean ``(max_depth, num_actions)``, the actions allowed at each depth.

        Returns:
            int64 ``(num_tasks, max_depth)``: the allowed action :meth:`act` takes in greedy
            mode at ``(task, depth)``; ``None`` (this default) when the greedy action depends
            on more, or when the agent cannot act in some of these states.
        """
        return None

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
        state = {self.renamed_state.get(key, key): value for key, value in state.items()}
        for name in self.state_names:
            current = getattr(self, name)
            if isinstance(current, torch.nn.Module | torch.optim.Optimizer):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name].numpy().astype(np.asarray(current).dtype))
        self.rng.bit_generator.state = json.loads(state["__rng__"])


def annealed(start: float, final: float | None, decay_episodes: int, episodes_seen: int) -> float:
    """Linear schedule from ``start`` to ``final`` over ``decay_episodes`` learned episodes.

    ``final=None`` or ``decay_episodes=0`` keeps ``start`` constant.
    """
    if final is None or decay_episodes <= 0:
        return start
    fraction = min(1.0, episodes_seen / decay_episodes)
    return start + fraction * (final - start)


@dataclass(eq=False)
class EpsilonSchedule:
    """The exploration rate of an epsilon-greedy agent, annealed linearly over learned routes.

    A mixin of the agents' dataclasses, listed before the agent's base class (``class
    QLearning(EpsilonSchedule, TabularAgent)``) so that its arguments come after the base's.
    The agent counts its learned routes in ``episodes_seen``.

    Args:
        epsilon: exploration rate (the start of the schedule when annealing).
        epsilon_final: exploration rate reached after ``epsilon_decay_episodes`` learned routes
            (linear); ``None`` keeps ``epsilon`` constant.
        epsilon_decay_episodes: length of the schedule, in learned routes.
    """

    epsilon: float = 0.1
    epsilon_final: float | None = None
    epsilon_decay_episodes: int = 0

    @property
    def current_epsilon(self) -> float:
        """The exploration rate after ``episodes_seen`` learned routes."""
        seen = int(self.episodes_seen)  # type: ignore[attr-defined]
        return annealed(self.epsilon, self.epsilon_final, self.epsilon_decay_episodes, seen)
