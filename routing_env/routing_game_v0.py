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

Spaces, keywords and suites are those of :class:`~routing_env.env.RoutingEnv` (see its
docstring): ``observation_space(agent)`` is its ``Dict(activation, task, depth)`` space,
``action_space(agent)`` is ``Discrete(num_modules + 1)`` (the last action is PASS / stop),
``infos[agent]["action_mask"]`` marks the allowed actions, masked actions follow
``invalid_action`` (``"end"`` ends that agent's route as a wrong prediction, ``"raise"`` raises
and leaves the game untouched), and the info of a finished route holds ``correct``, ``loss``,
``prediction``, ``label``, ``task``, ``path``, ``sample_index``, ``final_reward`` and
``invalid_action`` (for an invalid-action route ``prediction`` and ``loss`` are ``None``;
RoutingEnv's ``loss`` is ``nan`` there, which PettingZoo's seed tests cannot compare). In
layered routing every route lasts ``max_depth`` steps (unless an
invalid action ends one early); in recurrent routing an agent that chooses stop finishes
before the others and, as PettingZoo's parallel API prescribes, leaves ``agents`` after the
step that ended its route.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.utils import seeding
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec, parallel_to_aec_wrapper

from routing_env.datasets import MultiTaskDataset
from routing_env.env import RoutingEnv, describe_route, judge_sample
from routing_env.network import RoutedNetwork
from routing_env.rewards import invalid_action_reward

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
    depth: int = 0
    path: list[int] = field(default_factory=list)
    ended: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class RoutingGame(ParallelEnv):
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
    usual. :meth:`step` takes one action per live agent and applies them all at once: the
    collaboration reward of every choice is computed from the selection history before any of
    this step's choices are recorded, and every route that ends in this step is classified
    with the same module parameters before the finished routes are handed, in agent order, to
    the module trainer. A round ends when every route has ended (``agents`` is empty);
    stepping then raises.

    ## Seeding

    ``reset(seed=s)`` seeds the sample draws and, when this game built its network and the
    network has not been updated yet, draws the network's parameters from ``s`` too (and
    clears the selection history), like :class:`~routing_env.env.RoutingEnv`.

    ## Arguments

    ``dataset`` and every keyword of :class:`~routing_env.env.RoutingEnv` (``data_dir``,
    ``dataset_options``, ``split``, ``routing``, ``num_modules``, ``max_depth``,
    ``hidden_dim``, ``trunk``, ``readout``, ``reward``, ``collaboration_reward``,
    ``collaboration_window``, ``invalid_action``, ``invalid_action_loss``, ``module_lr``,
    ``module_optimizer``, ``module_batch_size``, ``train_modules``, ``network``,
    ``sample_order``, ``device``) with the same meaning and defaults; ``network=`` shares a
    network with other games or Gymnasium envs (e.g. a ``split="test"`` game for
    evaluation). ``render_mode``: ``None`` or ``"ansi"`` (one text line per agent).
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
        **kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        # The single-agent env validates the keywords, fills in the defaults and builds (or
        # checks and adopts) the network and its selection history; the game reads them.
        template = RoutingEnv(dataset, **kwargs)
        self.render_mode = render_mode
        self.dataset: MultiTaskDataset = template.dataset
        self.split: str = template.split
        self.network: RoutedNetwork = template.network
        self._owns_network = template._owns_network
        self.reward_kind: str = template.reward_kind
        self.train_modules: bool = template.train_modules
        self.sample_order: str = template.sample_order
        self.invalid_action: str = template.invalid_action
        self.invalid_action_loss: float = template.invalid_action_loss
        self.collaboration_reward: float = template.collaboration_reward

        data = self.dataset.split(self.split)
        device = self.network.device
        self._x = torch.as_tensor(data.x, device=device)
        self._task = data.task
        self._task_tensor = torch.as_tensor(data.task, device=device)
        self._y = data.y
        self._y_tensor = torch.as_tensor(data.y, device=device)

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
        self.observation_spaces = {
            agent: copy.deepcopy(template.observation_space) for agent in self.possible_agents
        }
        self.action_spaces = {
            agent: copy.deepcopy(template.action_space) for agent in self.possible_agents
        }
        self.agents: list[str] = []
        self._np_random: np.random.Generator | None = None
        self._orders: dict[str, np.ndarray] = {}  # drawn by the first _next_index of a pass
        self._positions = {agent: samples.size for agent, samples in self.task_samples.items()}
        self._routes: dict[str, _Route] = {}

    # ------------------------------------------------------------------ spaces

    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        """``Dict(activation=Box, task=Discrete(num_tasks), depth=Discrete(max_depth + 1))``."""
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

    # ------------------------------------------------------------------ reset

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Start a round: every agent gets one sample of its own task at depth 0."""
        if seed is not None:
            self._np_random, _ = seeding.np_random(seed)
            self._positions = {a: s.size for a, s in self.task_samples.items()}
            if self._owns_network and self.network.num_updates == 0:
                self.network.reset_parameters(seed)
                self.network.selection_history.clear()
        chosen = self._chosen_samples(options)
        indices = [
            chosen[agent] if agent in chosen else self._next_index(agent)
            for agent in self.possible_agents
        ]
        with torch.no_grad():
            batch = torch.as_tensor(indices, device=self.network.device)
            first = self.network.embed(self._x[batch]).cpu().numpy()
        self.agents = list(self.possible_agents)
        self._routes = {}
        observations, infos = {}, {}
        mask = self.network.action_mask(0)
        for agent, index, h in zip(self.possible_agents, indices, first, strict=True):
            route = _Route(index=index, task=self.agent_task[agent], h=h)
            route.info = {"action_mask": mask.copy(), "task": route.task, "sample_index": index}
            self._routes[agent] = route
            observations[agent] = self._observation(route, h)
            infos[agent] = route.info
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
            index = int(value)
            if not 0 <= index < len(self._task):
                raise ValueError(
                    f"sample index {index} for {agent} is outside the {self.split} split "
                    f"(0..{len(self._task) - 1})"
                )
            if self._task[index] != self.agent_task[agent]:
                raise ValueError(
                    f"sample {index} belongs to task {int(self._task[index])}, but {agent} "
                    f"routes task {self.agent_task[agent]}"
                )
            out[agent] = index
        return out

    def _next_index(self, agent: str) -> int:
        samples = self.task_samples[agent]
        if self._positions[agent] >= samples.size:
            self._positions[agent] = 0
            if self.sample_order == "shuffle":
                self._orders[agent] = self.np_random.permutation(samples)
            else:
                self._orders[agent] = samples
        index = int(self._orders[agent][self._positions[agent]])
        self._positions[agent] += 1
        return index

    # ------------------------------------------------------------------ step

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, dict[str, Any]],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Apply every live agent's action at once; see the class docstring."""
        if not self.agents:
            if self._routes:
                raise RuntimeError(
                    "step() called after every route of the round ended; call reset() first"
                )
            raise RuntimeError("step() called before reset()")
        chosen = self._check_actions(actions)
        net = self.network
        invalid = {
            agent
            for agent, action in chosen.items()
            if not net.action_mask(self._routes[agent].depth)[action]
        }
        if invalid and self.invalid_action == "raise":
            agent = min(invalid, key=self.possible_agents.index)
            depth = self._routes[agent].depth
            mask = net.action_mask(depth)
            raise ValueError(
                f"{agent}: action {chosen[agent]} is masked at depth {depth}: allowed actions "
                f"are {np.flatnonzero(mask).tolist()} (action_mask={mask.tolist()})"
            )

        # Collaboration reward: every choice of this step sees the history before the step.
        rewards = dict.fromkeys(chosen, 0.0)
        recorded = []
        for agent, action in chosen.items():
            if agent in invalid or action == net.extra_action:
                continue
            layer = self._layer(self._routes[agent].depth)
            if self.collaboration_reward:
                frequency = net.selection_history.frequency(layer, action)
                rewards[agent] += self.collaboration_reward / net.max_depth * frequency
            recorded.append((layer, action))
        if self.train_modules:
            for layer, action in recorded:
                net.selection_history.record(layer, action)

        observations, infos = {}, {}
        terminations = dict.fromkeys(chosen, False)
        finished = []
        for agent, action in chosen.items():
            route = self._routes[agent]
            route.path.append(action)
            if agent in invalid:
                rewards[agent] += self._end_invalid(route)
                terminations[agent] = True
                observations[agent] = self._observation(route, route.h)
                infos[agent] = route.info
                continue
            stop = net.routing == "recurrent" and action == net.extra_action
            if not stop:
                route.h = net.step_sample(route.h, route.depth, action)
                route.depth += 1
            if stop or route.depth == net.max_depth:
                outputs, final = self._finish(route)
                rewards[agent] += final
                terminations[agent] = True
                finished.append(route)
                observations[agent] = self._observation(route, outputs)
            else:
                route.info = {"action_mask": net.action_mask(route.depth).copy()}
                observations[agent] = self._observation(route, route.h)
            infos[agent] = route.info
        if finished and self.train_modules:
            self._train_on(finished)
        self.agents = [agent for agent in self.agents if not terminations[agent]]
        truncations = dict.fromkeys(chosen, False)
        return observations, rewards, terminations, truncations, infos

    def _check_actions(self, actions: dict[str, Any]) -> dict[str, int]:
        if not isinstance(actions, dict):
            raise TypeError(f"actions must be a dict agent -> action, got {type(actions).__name__}")
        unknown = [agent for agent in actions if agent not in self.agent_task]
        if unknown:
            raise ValueError(
                f"actions name {unknown}, which are not agents of this game "
                f"({self.possible_agents[0]} .. {self.possible_agents[-1]})"
            )
        chosen = {}
        size = self.network.num_actions
        for agent in self.agents:
            if actions.get(agent) is None:
                raise ValueError(
                    f"no action for {agent}, whose route has not ended; live agents are "
                    f"{self.agents}"
                )
            action = actions[agent]
            try:
                value = int(action)
            except (TypeError, ValueError):
                raise ValueError(f"{agent}: action must be an integer, got {action!r}") from None
            if value != action or not 0 <= value < size:
                raise ValueError(
                    f"{agent}: action {action!r} is outside the action space Discrete({size})"
                )
            chosen[agent] = value
        # Actions of agents whose route already ended are ignored (PettingZoo convention).
        return chosen

    def _layer(self, depth: int) -> int:
        return 0 if self.network.routing == "recurrent" else depth

    def _finish(self, route: _Route) -> tuple[np.ndarray, float]:
        net = self.network
        outputs = net.outputs_sample(route.h, route.task)
        loss, prediction, correct, label, final = judge_sample(
            net, outputs, self._y[route.index], self.reward_kind
        )
        self._end_info(route, correct, loss, prediction, label, final, invalid=False)
        return outputs, final

    def _end_invalid(self, route: _Route) -> float:
        label = self._y[route.index]
        if self.network.task_type == "classification":
            label = int(label)
        final = invalid_action_reward(self.reward_kind, self.invalid_action_loss)
        # RoutingEnv reports nan here; None says the same (no prediction, no loss) and, unlike
        # nan, compares equal to itself, as PettingZoo's determinism checks (seed tests)
        # require of infos.
        self._end_info(route, False, None, None, label, final, invalid=True)
        return final

    def _end_info(
        self,
        route: _Route,
        correct: bool | None,
        loss: float | None,
        prediction: Any,
        label: Any,
        final: float,
        invalid: bool,
    ) -> None:
        route.ended = True
        route.info = {
            "action_mask": self.network.action_mask(self.network.max_depth).copy(),
            "correct": correct,
            "loss": loss,
            "prediction": prediction,
            "label": label,
            "task": route.task,
            "path": tuple(route.path),
            "sample_index": route.index,
            "final_reward": final,
            "invalid_action": invalid,
        }

    def _train_on(self, routes: list[_Route]) -> None:
        """Hand this step's finished routes, in agent order, to the module trainer."""
        net = self.network
        padded = [route.path + [-1] * (net.max_depth - len(route.path)) for route in routes]
        index = torch.tensor([route.index for route in routes], device=net.device)
        net.add_routes(
            self._x[index],
            self._task_tensor[index],
            self._y_tensor[index],
            torch.tensor(padded, dtype=torch.long, device=net.device),
        )

    def _observation(self, route: _Route, h: np.ndarray) -> dict[str, Any]:
        activation = np.zeros(self.network.activation_dim, dtype=np.float32)
        activation[: h.shape[0]] = h
        return {
            "activation": activation,
            "task": route.task,
            "depth": len(route.path) if route.ended else route.depth,
        }

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
            self.network, route.path, route.index, route.task, route.info if route.ended else None
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
