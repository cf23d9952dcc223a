"""Multi-agent routing as a PettingZoo stochastic game (DESIGN 3.3; ``001`` 3.1.2, ``000`` 5.1).

One router per task competes and cooperates for *shared* modules::

    from routing_env import routing_game_v0
    penv = routing_game_v0.parallel_env(dataset="digits-mtl")   # pettingzoo.ParallelEnv
    aenv = routing_game_v0.env(dataset="digits-mtl")            # AEC (parallel_to_aec)

Agents are ``"router_0" .. "router_{T-1}"``, agent ``router_t`` routing samples of task ``t``.
Each episode (a "round") every agent routes one sample of its own task through the same
routed network; all agents act at once at every step. Agent ``router_t``'s reward is its own
sample's outcome, exactly as in :class:`~routing_env.env.RoutingEnv`: the final reward (``±1``
or ``-loss``) when its route ends, plus the collaboration reward after every module choice
when ``collaboration_reward`` is set. The modules train on every agent's finished routes
together (``module_batch_size`` counts routes of all agents), so one agent's choices change the
dynamics the others face: with ``train_modules=True`` the game is a general-sum stochastic game;
with ``train_modules=False`` the agents do not interact at all (the control condition).

Spaces, keywords, observation options and infos are those of
:class:`~routing_env.env.RoutingEnv` (see its docstring and :mod:`routing_env.mdp`):
``observation_space(agent)`` is its observation space (by default ``Dict(activation, task,
depth)``; ``flatten_observation`` and ``mask_in_observation`` as there), ``action_space(agent)``
is ``Discrete(num_modules + 1)`` (the last action is PASS / stop), ``infos[agent]`` holds the
info contract's keys at every reset and step (``action_mask``, ``route_done``, ``correct``,
``loss``, ``prediction``, ``label``, ``path``, ``sample_index``, ``final_reward``,
``invalid_action``), and masked actions follow ``invalid_action`` (``"end"`` ends that agent's
route as a wrong prediction, ``"raise"`` raises and leaves the game untouched).

The agent set of a round is fixed by default: an agent whose route ends early (an invalid
action, or stop in recurrent routing) stays in ``agents`` until the round ends; its further
actions are ignored (and need not be given), it is paid 0, its observation and info stay those
of its route's end (``route_done=True``, a mask that marks every action), and it terminates with
the others when the last route ends. Wrappers that need a fixed agent set (SuperSuit's vector
env, MARL libraries) rely on this. ``leave_early=True`` instead terminates each agent on the
step its route ends and removes it from ``agents``, as PettingZoo's parallel API allows.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.utils import seeding
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec, parallel_to_aec_wrapper

from routing_env.checkpoint import generator_state, restore_generator
from routing_env.datasets import MultiTaskDataset
from routing_env.mdp import RoutingMDP, SampleStream, describe_route

__all__ = ["AGENT_PREFIX", "RoutingGame", "agent_name", "env", "parallel_env", "raw_env"]

#: Agents are named ``f"{AGENT_PREFIX}_{task}"``.
AGENT_PREFIX = "router"


def agent_name(task: int) -> str:
    """The name of the agent that routes task ``task``."""
    return f"{AGENT_PREFIX}_{int(task)}"


@dataclass
class _Route:
    """One agent's route in the current round."""

    index: int
    task: int
    h: np.ndarray
    path: np.ndarray
    depth: int = 0
    length: int = 0
    ended: bool = False
    exploratory: int = 0
    next_exploratory: bool = False
    #: The last observation's activation (padded) and depth, for state().
    activation: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    observed_depth: int = 0
    observation: Any = None
    info: dict[str, Any] = field(default_factory=dict)


class RoutingGame(RoutingMDP, ParallelEnv):
    """Routing as a stochastic game: one router per task, shared modules (parallel API).

    ## Agents

    ``possible_agents = ["router_0", ..., "router_{T-1}"]`` for a dataset of ``T`` tasks;
    :attr:`agent_task` maps an agent to its task and :attr:`task_samples` to the indices of its
    task's samples in the split.

    ## Episodes

    :meth:`reset` draws one sample of its own task for every agent (train split: a new
    permutation of the task's samples per pass, ``sample_order="shuffle"``; test split: in
    order, ``"sequential"``). ``reset(options={"sample_indices": {agent: i}})`` routes split
    sample ``i`` (which must belong to the agent's task) instead; agents not named draw as
    usual. :meth:`step` takes one action per agent whose route is running and applies them all
    at once: the collaboration reward of every choice is computed from the selection history
    before any of this step's choices are recorded, and every route that ends in this step is
    classified with the same module parameters before the finished routes are handed, in agent
    order, to the module trainer. A round ends when every route has ended (``agents`` is
    empty); stepping then raises. See the module docstring for agents whose route ends early.

    ## State

    :meth:`state` is every agent's current observation, flattened (activation ⊕ one-hot task ⊕
    one-hot depth, as ``flatten_observation`` gives it), concatenated in agent order;
    ``state_space`` is its ``Box``.

    ## Seeding

    ``reset(seed=s)`` seeds the sample draws and, when this game built its network and the
    network has not been updated yet, draws the network's parameters from ``s`` too (and
    clears the selection history), like :class:`~routing_env.env.RoutingEnv`.

    ## Exploration squashing

    ``squash_kappa`` (``000`` eq. 7.4) works as on the single env; :meth:`mark_exploratory`
    takes ``{agent: bool}`` for the actions of the next :meth:`step`.

    ## Arguments

    ``dataset`` and every keyword of :class:`~routing_env.env.RoutingEnv` (``data_dir``,
    ``dataset_options``, ``split``, ``routing``, ``num_modules``, ``max_depth``,
    ``hidden_dim``, ``trunk``, ``readout``, ``reward``, ``collaboration_reward``,
    ``collaboration_window``, ``invalid_action``, ``invalid_action_loss``, ``module_lr``,
    ``module_optimizer``, ``module_batch_size``, ``train_modules``, ``network``,
    ``sample_order``, ``device``, ``squash_kappa``, ``flatten_observation``,
    ``mask_in_observation``) with the same meaning and defaults; ``network=`` shares a network
    with other games or Gymnasium envs (e.g. a ``split="test"`` game for evaluation).
    ``leave_early``: agents leave the round when their route ends (default ``False``, see the
    module docstring). ``render_mode``: ``None`` or ``"ansi"`` (one text line per agent).
    """

    metadata = {
        "name": "routing_game_v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
        "render_fps": 4,
    }

    def __init__(
        self,
        dataset: str | os.PathLike | MultiTaskDataset = "digits-mtl",
        *,
        render_mode: str | None = None,
        leave_early: bool = False,
        **kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if not isinstance(leave_early, (bool, np.bool_)):
            raise ValueError(f"leave_early must be True or False, got {leave_early!r}")
        RoutingMDP.__init__(self, dataset, **kwargs)
        self.render_mode = render_mode
        self.leave_early = bool(leave_early)

        self.num_tasks = self.dataset.num_tasks
        self.possible_agents = [agent_name(t) for t in range(self.num_tasks)]
        self.agent_task = {agent: t for t, agent in enumerate(self.possible_agents)}
        self.task_samples = {
            agent: np.flatnonzero(self._task == t) for agent, t in self.agent_task.items()
        }
        empty = [agent for agent, samples in self.task_samples.items() if samples.size == 0]
        if empty:
            raise ValueError(
                f"the {self.split} split of {self.dataset.name!r} has no sample of the tasks of "
                f"{', '.join(empty)}: every agent needs samples of its own task"
            )
        shuffle = self.sample_order == "shuffle"
        self._streams = {
            agent: SampleStream(samples, shuffle) for agent, samples in self.task_samples.items()
        }
        observation_space = self._route_observation_space()
        action_space = self._route_action_space()
        self.observation_spaces = {
            agent: copy.deepcopy(observation_space) for agent in self.possible_agents
        }
        self.action_spaces = {agent: copy.deepcopy(action_space) for agent in self.possible_agents}
        flat = self._flat_route_space()
        count = len(self.possible_agents)
        self.state_space = gymnasium.spaces.Box(
            np.tile(flat.low, count), np.tile(flat.high, count), dtype=np.float32
        )
        self.agents: list[str] = []
        self._np_random: np.random.Generator | None = None
        self._routes: dict[str, _Route] = {}

    # ------------------------------------------------------------------ spaces

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        """The observation space of every agent (see :class:`~routing_env.env.RoutingEnv`)."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        """``Discrete(num_modules + 1)``; the last action is PASS (layered) / stop (recurrent)."""
        return self.action_spaces[agent]

    @property
    def np_random(self) -> np.random.Generator:
        """The generator of the sample draws (seeded by ``reset(seed=)``)."""
        if self._np_random is None:
            self._np_random, _ = seeding.np_random()
        return self._np_random

    def state(self) -> np.ndarray:
        """Every agent's current observation, flattened, in agent order (``state_space``)."""
        if not self._routes:
            raise RuntimeError("state() called before reset()")
        parts = []
        for agent in self.possible_agents:
            route = self._routes[agent]
            parts.append(route.activation)
            parts.append(self._eye_task[route.task])
            parts.append(self._eye_depth[route.observed_depth])
        return np.concatenate(parts)

    # ------------------------------------------------------------------ reset

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Start a round: every agent gets one sample of its own task at depth 0."""
        if seed is not None:
            self._np_random, _ = seeding.np_random(seed)
            self._reseed(seed, list(self._streams.values()))
        chosen = self._chosen_samples(options)
        rng = self.np_random
        indices = [
            chosen[agent] if agent in chosen else int(self._streams[agent].take(1, rng)[0])
            for agent in self.possible_agents
        ]
        net = self.network
        with torch.no_grad():
            batch = torch.as_tensor(indices, device=net.device)
            first = net.embed(self._x[batch]).cpu().numpy()
        self.agents = list(self.possible_agents)
        self._routes = {}
        observations, infos = {}, {}
        mask = self._masks[0]
        for agent, index, h in zip(self.possible_agents, indices, first, strict=True):
            route = _Route(
                index=index,
                task=self.agent_task[agent],
                h=h,
                path=np.full(net.max_depth, -1, dtype=np.int64),
            )
            route.info = self._route_info(mask, route.path, index)
            self._routes[agent] = route
            observations[agent] = self._observe(route, h, 0, mask)
            infos[agent] = dict(route.info)
        return observations, infos

    def _chosen_samples(self, options: dict[str, Any] | None) -> dict[str, int]:
        chosen = dict((options or {}).get("sample_indices") or {})
        out = {}
        for agent, value in chosen.items():
            if agent not in self.agent_task:
                raise ValueError(
                    f"options['sample_indices'] names {agent!r}, which is not an agent of this "
                    f"game ({self.possible_agents[0]} .. {self.possible_agents[-1]})"
                )
            index = self._check_sample_index(value, f"{agent}: ")
            if self._task[index] != self.agent_task[agent]:
                raise ValueError(
                    f"sample {index} belongs to task {int(self._task[index])}, but {agent} "
                    f"routes task {self.agent_task[agent]}"
                )
            out[agent] = index
        return out

    # ------------------------------------------------------------------ step

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, Any],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Apply the action of every agent whose route is running, at once; see the class
        docstring."""
        if not self.agents:
            if self._routes:
                raise RuntimeError(
                    "step() called after every route of the round ended; call reset() first"
                )
            raise RuntimeError("step() called before reset()")
        live = self._live_agents(actions)
        names = [f"{agent}: " for agent in live]
        chosen = self._check_actions([actions[agent] for agent in live], names)
        routes = [self._routes[agent] for agent in live]
        depths = np.array([route.depth for route in routes], dtype=np.int64)
        allowed = self._allowed[depths, chosen]
        valid = bool(allowed.all())
        if not valid:
            self._refuse_masked(allowed, depths, chosen, names)
        for route in routes:
            route.exploratory += route.next_exploratory
            route.next_exploratory = False
        paid = self._collaboration_rewards(chosen, depths, None if valid else allowed)

        net = self.network
        ending: list[int] = []  # positions in `live` of the routes that end in this step
        outputs = []
        for position, (route, action, ok) in enumerate(
            zip(routes, chosen.tolist(), allowed.tolist(), strict=True)
        ):
            route.path[route.length] = action
            route.length += 1
            if not ok:
                ending.append(position)
                continue
            stop = self._recurrent and action == self._extra
            if not stop:
                route.h = net.step_sample(route.h, route.depth, action)
                route.depth += 1
            if stop or route.depth == net.max_depth:
                ending.append(position)
                outputs.append(net.outputs_sample(route.h, route.task))
        if ending:
            self._end(routes, ending, allowed, outputs, paid)

        observations, rewards, infos = {}, {}, {}
        for agent in self.agents:
            route = self._routes[agent]
            observations[agent] = route.observation
            infos[agent] = dict(route.info)
            rewards[agent] = 0.0
        for position, agent in enumerate(live):
            rewards[agent] = float(paid[position])
            if not self._routes[agent].ended:
                route = self._routes[agent]
                mask = self._masks[route.depth]
                route.info = self._route_info(mask, route.path, route.index)
                observations[agent] = self._observe(route, route.h, route.depth, mask)
                infos[agent] = dict(route.info)
        round_over = all(route.ended for route in self._routes.values())
        if self.leave_early:
            terminations = {agent: self._routes[agent].ended for agent in self.agents}
        else:
            terminations = dict.fromkeys(self.agents, round_over)
        truncations = dict.fromkeys(self.agents, False)
        self.agents = [agent for agent in self.agents if not terminations[agent]]
        return observations, rewards, terminations, truncations, infos

    def _live_agents(self, actions: Mapping[str, Any]) -> list[str]:
        """The agents whose routes are running, each of which must have an action; actions of
        agents whose route has ended are ignored."""
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions must be a dict agent -> action, got {type(actions).__name__}")
        unknown = [agent for agent in actions if agent not in self.agent_task]
        if unknown:
            raise ValueError(
                f"actions name {unknown}, which are not agents of this game "
                f"({self.possible_agents[0]} .. {self.possible_agents[-1]})"
            )
        live = [agent for agent in self.agents if not self._routes[agent].ended]
        for agent in live:
            if actions.get(agent) is None:
                raise ValueError(
                    f"no action for {agent}, whose route has not ended; agents with running "
                    f"routes are {live}"
                )
        return live

    def _end(
        self,
        routes: list[_Route],
        ending: list[int],
        allowed: np.ndarray,
        outputs: list[np.ndarray],
        paid: np.ndarray,
    ) -> None:
        """End the routes at ``ending`` (positions in ``routes``); their final rewards join
        ``paid``."""
        ended = [routes[position] for position in ending]
        judged = allowed[ending]
        columns = self._end_routes(
            np.array([route.index for route in ended], dtype=np.int64),
            np.stack([route.path for route in ended]),
            np.array([route.length for route in ended], dtype=np.int64),
            np.stack(outputs) if outputs else np.zeros((0, 0), dtype=np.float32),
            judged=None if judged.all() else judged,
            exploratory=(
                np.array([route.exploratory for route in ended]) if self.squash_kappa else None
            ),
        )
        results = iter(outputs)
        terminal = self._terminal_mask
        for row, (position, route) in enumerate(zip(ending, ended, strict=True)):
            route.ended = True
            route.info = self._info_row(columns, row)
            paid[position] += route.info["final_reward"]
            h = next(results) if judged[row] else route.h
            route.observation = self._observe(route, h, route.length, terminal)

    def _observe(self, route: _Route, h: np.ndarray, depth: int, mask: np.ndarray) -> Any:
        activation = np.zeros(self.network.activation_dim, dtype=np.float32)
        activation[: h.shape[0]] = h
        route.activation = activation
        route.observed_depth = depth
        route.observation = self._observation(activation, route.task, depth, mask.copy())
        return route.observation

    def checkpoint_state(self) -> dict[str, Any]:
        """What the game adds to its network's state to continue exactly, between two rounds:
        every agent's sample stream and the draws' random state (a checkpoint is taken between
        rounds, so no route is in flight)."""
        if self.agents:
            raise RuntimeError("checkpoint_state() called during a round: take it between rounds")
        return {
            "streams": {agent: stream.state_dict() for agent, stream in self._streams.items()},
            "rng": generator_state(self.np_random),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`checkpoint_state` (the network is restored separately)."""
        for agent, stream in self._streams.items():
            stream.load_state_dict(state["streams"][agent])
        restore_generator(self.np_random, state["rng"])
        self.agents, self._routes = [], {}

    def mark_exploratory(self, explored: Mapping[str, bool]) -> None:
        """Which agents' actions in the next :meth:`step` are exploratory (``000`` 7.4.2):
        ``{agent: bool}``, agents not named unmarked; see :meth:`RoutingEnv.mark_exploratory`."""
        if not self._routes:
            raise RuntimeError("mark_exploratory() called before reset()")
        for agent, mark in explored.items():
            if agent not in self.agent_task:
                raise ValueError(f"mark_exploratory names {agent!r}, not an agent of this game")
            self._routes[agent].next_exploratory = bool(mark)

    # ------------------------------------------------------------------ rendering

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: one line per agent showing its route so far."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        if not self._routes:
            return "(no round yet: call reset())"
        return "\n".join(
            f"{agent}: {self._describe(route)}" for agent, route in self._routes.items()
        )

    def _describe(self, route: _Route) -> str:
        return describe_route(
            self.network,
            route.path[: route.length].tolist(),
            route.index,
            route.task,
            route.info if route.ended else None,
        )

    def close(self) -> None:
        """Nothing to release (the network may be shared with other environments)."""

    def __str__(self) -> str:
        return self.metadata["name"]


def parallel_env(**kwargs: Any) -> RoutingGame:
    """The game with PettingZoo's parallel API (see :class:`RoutingGame` for the keywords)."""
    return RoutingGame(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv:
    """The AEC game without PettingZoo's order-enforcing wrapper."""
    return parallel_to_aec_wrapper(RoutingGame(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The game with PettingZoo's AEC API: agents act in turn within a step, the game moves
    once the last live agent has acted (``parallel_to_aec``, order-enforcing)."""
    return parallel_to_aec(RoutingGame(**kwargs))
