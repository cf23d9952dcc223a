"""Routers that do not learn: fixed routes per task, and uniformly random valid actions.

They are the reference points of a routing experiment: fixed per-task routes are the
"task-specific-all-fc" architecture of ``001`` section 4 expressed as routes; random routes show
what the modules learn when nobody routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.base import Agent, Episode
from agents.persistence import register


@register
class FixedRouter(Agent):
    """Always takes the same route for a task; never learns.

    Args:
        routes: task id -> sequence of actions, one per depth. A route shorter than the
            episode raises; in recurrent routing a route may end with the stop action.

    Example: ``FixedRouter({t: (t, t, t) for t in range(10)})`` gives each task its own module
    at every layer.
    """

    def __init__(self, routes: Mapping[int, Sequence[int]], seed: int | None = None) -> None:
        super().__init__(seed)
        self.routes = {int(task): tuple(int(a) for a in route) for task, route in routes.items()}
        self._remember(routes={str(task): list(route) for task, route in self.routes.items()})

    @classmethod
    def per_task(cls, num_tasks: int, depth: int, num_modules: int) -> FixedRouter:
        """Task ``t`` takes module ``t mod num_modules`` at every one of ``depth`` layers."""
        return cls({t: (t % num_modules,) * depth for t in range(num_tasks)})

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> int:
        """The action of ``obs["task"]``'s route at ``obs["depth"]``."""
        task, depth = int(obs["task"]), int(obs["depth"])
        if task not in self.routes:
            raise KeyError(
                f"no fixed route for task {task}; routes exist for {sorted(self.routes)}"
            )
        route = self.routes[task]
        if depth >= len(route):
            raise IndexError(
                f"the fixed route of task {task} has {len(route)} actions, depth is {depth}"
            )
        return route[depth]

    def greedy_batchable(self) -> bool:
        """``True``: the action is the task's route at the depth, nothing else."""
        return True

    def greedy_table(self, num_tasks: int, masks: np.ndarray) -> np.ndarray | None:
        """The routes of tasks ``0 .. num_tasks - 1`` as a table, when each has an action at
        every one of the ``len(masks)`` depths (else ``None``: a route that runs out raises
        when acting). The actions are taken as they are, allowed or not."""
        depth_count = len(masks)
        routes = [self.routes.get(task, ()) for task in range(num_tasks)]
        if any(len(route) < depth_count for route in routes):
            return None
        return np.array([route[:depth_count] for route in routes], dtype=np.int64).reshape(
            num_tasks, depth_count
        )

    def learn(self, episode: Episode) -> None:
        """Fixed routes do not learn."""


@register
class RandomRouter(Agent):
    """Picks uniformly among the actions the mask allows; never learns (also when greedy).

    Args:
        seed: seed of the router's own random stream.
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(seed)
        self._remember()

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """A random allowed action (``info["action_mask"]``)."""
        allowed = np.flatnonzero(info["action_mask"])
        if allowed.size == 0:
            raise ValueError("no action is allowed: the route has ended, call reset()")
        return int(self.rng.choice(allowed))

    def learn(self, episode: Episode) -> None:
        """Random routes do not learn."""
