"""Router architectures: per-task agents and dispatched routing (``001`` fig. 3, ``000`` ch. 6).

* Single agent (``001`` fig. 3a): any agent used as it is.
* :class:`PerTask` (fig. 3b): one sub-agent per task; the task label picks the sub-agent.
* :class:`Dispatched` (fig. 3c, ``000`` 6.2.2): a dispatcher agent looks at the first
  activation and assigns the sample to one of ``num_routers`` virtual tasks; the router then
  routes the sample as if that were its task. The dispatcher is trained online on the same
  reward as the routing decisions: its episode is one decision whose return is the route's.
* :class:`OfflineDispatcher` (``000`` 6.2.1): the assignment comes from clusters of the inputs
  found before training (k-means or agglomerative clustering, scikit-learn); use it as the
  ``dispatcher`` of :class:`Dispatched`.

A dispatched router does not use the task label at all: it is the architecture for routing
without meta-information (``000`` 7.1.5).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from agents.base import Agent, Episode
from agents.persistence import agent_state, rebuild_agent, register


class Composite(Agent):
    """Base of the architectures made of sub-agents: greedy mode reaches every sub-agent.

    Args:
        parts: the sub-agents.
        seed: recorded; the sub-agents own their random streams.
    """

    def __init__(self, parts: Sequence[Agent], seed: int | None = None) -> None:
        self._parts: list[Agent] = []  # the greedy mode Agent.__init__ sets reaches none of them
        super().__init__(seed)
        self._parts = list(parts)

    @property
    def greedy(self) -> bool:  # type: ignore[override]
        return self._greedy

    @greedy.setter
    def greedy(self, value: bool) -> None:
        self._greedy = value
        for part in self._parts:
            part.greedy = value


@register
class PerTask(Composite):
    """One sub-agent per task (``001`` figure 3b, the paper's multi-agent "routing-all-fc").

    Args:
        agents: the sub-agents, one per task, indexed by task id. Each sees the unchanged
            observation (so a sub-agent built for one task should use ``num_tasks=1`` or ignore
            the task).
        seed: unused by the wrapper itself (the sub-agents own their streams); recorded.

    Use :meth:`build` to make the sub-agents from a factory with distinct seeds.
    """

    def __init__(self, agents: Sequence[Agent], seed: int | None = None) -> None:
        if not agents:
            raise ValueError("PerTask needs at least one sub-agent")
        super().__init__(agents, seed)
        self.agents = list(agents)
        self.config = {
            "agents": [agent_state(a, with_state=False) for a in self.agents],
            "seed": seed,
        }

    @classmethod
    def build(cls, factory: Callable[[int], Agent], num_tasks: int, seed: int = 0) -> PerTask:
        """Sub-agent ``t`` is ``factory(seed_t)`` with seeds spawned from ``seed``."""
        seeds = np.random.SeedSequence(seed).generate_state(num_tasks)
        return cls([factory(int(s)) for s in seeds], seed=seed)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PerTask:
        return cls([rebuild_agent(entry) for entry in config["agents"]], seed=config["seed"])

    def _agent(self, task: int) -> Agent:
        if not 0 <= task < len(self.agents):
            raise ValueError(f"task {task} has no sub-agent; there are {len(self.agents)}")
        return self.agents[task]

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """The action of the sub-agent of ``obs["task"]``."""
        return self._agent(int(obs["task"])).act(obs, info)

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """Each task's rows are handed to its sub-agent in one batch."""
        tasks = np.asarray(obs["task"])
        actions = np.empty(len(tasks), dtype=np.int64)
        for task in np.unique(tasks):
            rows = np.flatnonzero(tasks == task)
            part = {key: np.asarray(value)[rows] for key, value in obs.items()}
            actions[rows] = self._agent(int(task)).act_batch(part, masks[rows])
        return actions

    def greedy_batchable(self) -> bool:
        """Whether every sub-agent's greedy actions can be batched."""
        return all(agent.greedy_batchable() for agent in self.agents)

    def greedy_table(self, num_tasks: int, masks: np.ndarray) -> np.ndarray | None:
        """Row ``t`` of sub-agent ``t``'s table, when every sub-agent has one."""
        if num_tasks > len(self.agents):
            return None
        rows = []
        for task in range(num_tasks):
            table = self.agents[task].greedy_table(task + 1, masks)
            if table is None:
                return None
            rows.append(table[task])
        return np.stack(rows) if rows else np.zeros((0, len(masks)), dtype=np.int64)

    def learn(self, episode: Episode) -> None:
        """The episode's task's sub-agent learns it."""
        self._agent(int(episode.observations[0]["task"])).learn(episode)

    def state_dict(self) -> dict[str, Any]:
        return {"agents": [a.state_dict() for a in self.agents]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for agent, sub_state in zip(self.agents, state["agents"], strict=True):
            agent.load_state_dict(sub_state)


def _with_task(obs: Mapping[str, Any], task: int) -> dict[str, Any]:
    return {**obs, "task": task}


def _episode_with_task(episode: Episode, task: int) -> Episode:
    return Episode(
        [_with_task(obs, task) for obs in episode.observations],
        episode.actions,
        episode.rewards,
        episode.infos,
        episode.final_info,
    )


@register
class SingleAgent(Composite):
    """One agent for all tasks that does not see the task label (``001`` figure 3a).

    Wraps an agent built with ``num_tasks=1`` (a tabular agent then keeps one table per depth,
    shared by every task) and shows it every observation with ``task = 0``.

    Args:
        agent: the wrapped agent.
        seed: recorded; the wrapped agent owns its random stream.
    """

    def __init__(self, agent: Agent, seed: int | None = None) -> None:
        super().__init__([agent], seed)
        self.agent = agent
        self.config = {"agent": agent_state(agent, with_state=False), "seed": seed}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SingleAgent:
        return cls(rebuild_agent(config["agent"]), seed=config["seed"])

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """The wrapped agent's action with the task hidden."""
        return self.agent.act(_with_task(obs, 0), info)

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        return self.agent.act_batch({**obs, "task": np.zeros_like(obs["task"])}, masks)

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray | None:
        """The wrapped agent's answer, with the task hidden."""
        return self.agent.exploratory({**obs, "task": np.zeros_like(obs["task"])}, masks, actions)

    def greedy_batchable(self) -> bool:
        """Whether the wrapped agent's greedy actions can be batched."""
        return self.agent.greedy_batchable()

    def greedy_table(self, num_tasks: int, masks: np.ndarray) -> np.ndarray | None:
        """The wrapped agent's task-0 row, for every task."""
        table = self.agent.greedy_table(1, masks)
        if table is None:
            return None
        return np.repeat(table[:1], num_tasks, axis=0)

    def learn(self, episode: Episode) -> None:
        """The wrapped agent learns the episode with the task hidden."""
        self.agent.learn(_episode_with_task(episode, 0))

    def state_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])


@register
class Dispatched(Composite):
    """A dispatcher assigns each sample to a virtual task; a router routes it (``001`` fig. 3c).

    Args:
        dispatcher: an agent whose ``num_actions`` is ``num_routers`` (or an
            :class:`OfflineDispatcher`); it acts once per route, on the depth-0 observation,
            with all ``num_routers`` choices allowed.
        router: an agent built with ``num_tasks = num_routers``; it sees the dispatcher's
            choice as the task.
        num_routers: number of virtual tasks (sub-routers).
        seed: recorded; the sub-agents own their random streams.
    """

    #: The current route's dispatch is kept between ``act`` calls.
    routes_in_batches: ClassVar[bool] = False

    def __init__(
        self, dispatcher: Agent, router: Agent, num_routers: int, seed: int | None = None
    ) -> None:
        super().__init__([dispatcher, router], seed)
        self.dispatcher = dispatcher
        self.router = router
        self.num_routers = int(num_routers)
        self._assignments: deque[int] = deque()
        self._current = -1
        self.config = {
            "dispatcher": agent_state(dispatcher, with_state=False),
            "router": agent_state(router, with_state=False),
            "num_routers": self.num_routers,
            "seed": seed,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Dispatched:
        return cls(
            rebuild_agent(config["dispatcher"]),
            rebuild_agent(config["router"]),
            config["num_routers"],
            seed=config["seed"],
        )

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """At depth 0 dispatch; then act as the router with the assigned virtual task."""
        if int(obs["depth"]) == 0:
            choice = self.dispatcher.act(
                _with_task(obs, 0), {"action_mask": np.ones(self.num_routers, dtype=np.int8)}
            )
            self._current = int(choice)
            if not self.greedy:
                self._assignments.append(self._current)
        if self._current < 0:
            raise RuntimeError("Dispatched.act was called mid-route before the depth-0 decision")
        return self.router.act(_with_task(obs, self._current), info)

    def greedy_batchable(self) -> bool:
        """``False``: the dispatch of the route in progress is kept between :meth:`act` calls."""
        return False

    def learn(self, episode: Episode) -> None:
        """Both learn from the route: the router on the virtual task, the dispatcher once."""
        if not self._assignments:
            raise RuntimeError("Dispatched.learn got a route it did not dispatch")
        choice = self._assignments.popleft()
        self.router.learn(_episode_with_task(episode, choice))
        total = float(episode.returns()[0])
        self.dispatcher.learn(
            Episode(
                [_with_task(episode.observations[0], 0)],
                [choice],
                [total],
                [{"action_mask": np.ones(self.num_routers, dtype=np.int8)}],
                {"final_reward": total},
            )
        )

    def state_dict(self) -> dict[str, Any]:
        return {"dispatcher": self.dispatcher.state_dict(), "router": self.router.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dispatcher.load_state_dict(state["dispatcher"])
        self.router.load_state_dict(state["router"])


@register
class OfflineDispatcher(Agent):
    """Dispatch by clusters of the first activation found before training (``000`` 6.2.1).

    Args:
        num_clusters: number of clusters (virtual tasks).
        method: ``"kmeans"`` or ``"agglomerative"`` (scikit-learn); new samples go to the
            cluster with the nearest centroid (agglomerative clustering has no ``predict``).
        seed: seed of k-means.

    Call :meth:`fit` with depth-0 activations (e.g. from :func:`collect_activations`) before
    use. It never learns online.
    """

    state_names = ("centroids",)

    def __init__(self, num_clusters: int, method: str = "kmeans", seed: int | None = None) -> None:
        super().__init__(seed)
        if method not in ("kmeans", "agglomerative"):
            raise ValueError(f"method must be 'kmeans' or 'agglomerative', got {method!r}")
        self.num_clusters = int(num_clusters)
        self.method = method
        self.centroids = np.zeros((0, 0), dtype=np.float32)
        self._remember(num_clusters=num_clusters, method=method)

    def fit(self, activations: np.ndarray) -> np.ndarray:
        """Cluster ``activations`` (``(n, dim)``); return their cluster labels."""
        from sklearn.cluster import AgglomerativeClustering, KMeans

        data = np.asarray(activations, dtype=np.float64)
        if self.method == "kmeans":
            model = KMeans(self.num_clusters, n_init=10, random_state=self.seed)
        else:
            model = AgglomerativeClustering(self.num_clusters)
        labels = model.fit_predict(data)
        self.centroids = np.stack(
            [data[labels == k].mean(axis=0) for k in range(self.num_clusters)]
        ).astype(np.float32)
        return labels

    def _assign(self, activations: np.ndarray) -> np.ndarray:
        if self.centroids.size == 0:
            raise RuntimeError("OfflineDispatcher.fit must be called before dispatching")
        distances = ((activations[:, None, :] - self.centroids[None]) ** 2).sum(axis=2)
        return distances.argmin(axis=1)

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """The cluster of ``obs["activation"]``."""
        return int(self._assign(np.asarray(obs["activation"], dtype=np.float32)[None])[0])

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        return self._assign(np.asarray(obs["activation"], dtype=np.float32))

    def greedy_batchable(self) -> bool:
        """``True``: the nearest centroid of each activation."""
        return True

    def learn(self, episode: Episode) -> None:
        """Offline clusters do not learn online."""


def collect_activations(env: Any, count: int, seed: int | None = None) -> np.ndarray:
    """Depth-0 activations of ``count`` samples of ``env`` (for :meth:`OfflineDispatcher.fit`).

    Uses ``reset(options={"sample_index": i})`` on evenly spaced samples; the data order of
    later resets is unaffected.
    """
    base = env.unwrapped
    indices = np.linspace(0, base.num_samples - 1, num=min(count, base.num_samples)).astype(int)
    rows = []
    for number, index in enumerate(indices):
        obs, _ = env.reset(seed=seed if number == 0 else None, options={"sample_index": int(index)})
        rows.append(obs["activation"])
    return np.stack(rows)
