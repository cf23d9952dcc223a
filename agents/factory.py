"""Build any router by name for a given environment (the ``--agent`` names of the CLI).

Names:

* tabular, keyed by (task, depth), i.e. one table per task (``001`` fig. 3b): ``wpl``,
  ``wpl-printed`` (the seeds' printed weighting, DESIGN 4), ``q``, ``advantage``,
  ``reinforce``, ``wolf-phc``;
* ``single-<tabular>``: one table shared by all tasks (keyed by depth only, ``001`` fig. 3a);
* approximate single agents (MLP on ``concat(h, onehot(t), onehot(d))``): ``q-approx``,
  ``reinforce-approx``, ``actor-critic``, ``advantage-approx``, ``wpl-approx``,
  ``eps-reinforce``;
* ``per-task-<approximate>``: one approximate agent per task;
* ``dispatched-<tabular>``: an online dispatcher (approximate REINFORCE on the first
  activation, without the task label) assigns samples to ``num_tasks`` virtual tasks, each
  routed by the tabular agent (``001`` fig. 3c, ``000`` 6.2.2);
* ``kmeans-<tabular>`` / ``agglomerative-<tabular>``: offline dispatch by clusters of the
  first activations (``000`` 6.2.1);
* ``fixed-per-task`` and ``random``: non-learning references.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.actor_critic import ActorCritic
from agents.advantage import AdvantageLearning
from agents.advantage_approx import AdvantageApprox
from agents.architectures import (
    Dispatched,
    OfflineDispatcher,
    PerTask,
    SingleAgent,
    collect_activations,
)
from agents.base import Agent
from agents.eps_reinforce import EpsilonReinforce
from agents.fixed import FixedRouter, RandomRouter
from agents.q_approx import QApprox
from agents.q_learning import QLearning
from agents.reinforce import Reinforce
from agents.reinforce_approx import ReinforceApprox
from agents.wolf_phc import WoLFPHC
from agents.wpl import WPL
from agents.wpl_approx import WPLApprox
from routing_env.settings import TRAIN_DEFAULTS, router_defaults

TABULAR: dict[str, Callable[..., Agent]] = {
    "wpl": WPL,
    "wpl-printed": lambda **kw: WPL(weighting="printed", **kw),
    "q": QLearning,
    "advantage": AdvantageLearning,
    "reinforce": Reinforce,
    "wolf-phc": WoLFPHC,
}
APPROXIMATE: dict[str, Callable[..., Agent]] = {
    "q-approx": QApprox,
    "reinforce-approx": ReinforceApprox,
    "actor-critic": ActorCritic,
    "advantage-approx": AdvantageApprox,
    "wpl-approx": WPLApprox,
    "eps-reinforce": EpsilonReinforce,
}
OFFLINE_DISPATCH = ("kmeans", "agglomerative")
OFFLINE_DISPATCH_SAMPLES = 2000

AGENT_NAMES: tuple[str, ...] = (
    *TABULAR,
    *(f"single-{name}" for name in TABULAR),
    *APPROXIMATE,
    *(f"per-task-{name}" for name in APPROXIMATE),
    *(f"dispatched-{name}" for name in TABULAR),
    *(f"{method}-{name}" for method in OFFLINE_DISPATCH for name in TABULAR),
    "fixed-per-task",
    "random",
)


def default_num_envs(name: str) -> int:
    """Routes in flight when router ``name`` trains with ``routing-env train``, ``compare`` or
    ``report``: ``TRAIN_DEFAULTS["num_envs"]`` (the vector env) for the routers that route
    batches, 1 (the single-sample env) for the dispatched ones, which keep the current route's
    dispatch between ``act`` calls (:attr:`agents.base.Agent.routes_in_batches`).

    The vector env is the default because the routers learn as well per route there as in the
    single-sample env, and several times faster: ``benchmarks/vector_learning.py`` (figures in
    ``docs/results.md``, "The vector env by default").
    """
    if name not in AGENT_NAMES:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(AGENT_NAMES)}")
    prefix = name.partition("-")[0]
    if prefix == "dispatched" or prefix in OFFLINE_DISPATCH:
        return 1
    return int(TRAIN_DEFAULTS["num_envs"])


def make_agent(name: str, env: Any, seed: int = 0, **options: Any) -> Agent:
    """The router called ``name`` sized for ``env`` (a routing env or its wrapper).

    ``options`` go to the learning agent's constructor (e.g. ``lr=0.2``), over the defaults
    that :data:`routing_env.settings.ROUTER_DEFAULTS` gives for ``name`` (those of ``routing-env
    train``); offline dispatchers are fitted on depth-0 activations of ``env`` here.
    """
    options = {**router_defaults(name), **options}
    base = env.unwrapped
    network = base.network
    num_tasks = base.dataset.num_tasks
    sizes = {"max_depth": network.max_depth, "num_actions": network.num_actions}
    approx_sizes = {"activation_dim": network.activation_dim, **sizes}

    if name in TABULAR:
        return TABULAR[name](num_tasks=num_tasks, seed=seed, **sizes, **options)
    if name in APPROXIMATE:
        return APPROXIMATE[name](num_tasks=num_tasks, seed=seed, **approx_sizes, **options)
    prefix, _, inner = name.partition("-")
    if prefix == "single" and inner in TABULAR:
        return SingleAgent(TABULAR[inner](num_tasks=1, seed=seed, **sizes, **options))
    if name.startswith("per-task-") and name[len("per-task-") :] in APPROXIMATE:
        cls = APPROXIMATE[name[len("per-task-") :]]
        return PerTask.build(
            lambda s: cls(num_tasks=num_tasks, seed=s, **approx_sizes, **options),
            num_tasks,
            seed=seed,
        )
    if prefix == "dispatched" and inner in TABULAR:
        dispatcher = ReinforceApprox(
            activation_dim=network.activation_dim,
            num_tasks=1,
            max_depth=1,
            num_actions=num_tasks,
            use_task=False,
            seed=seed + 1,
        )
        router = TABULAR[inner](num_tasks=num_tasks, seed=seed, **sizes, **options)
        return Dispatched(dispatcher, router, num_tasks, seed=seed)
    if prefix in OFFLINE_DISPATCH and inner in TABULAR:
        dispatcher = OfflineDispatcher(num_tasks, method=prefix, seed=seed)
        dispatcher.fit(collect_activations(env, OFFLINE_DISPATCH_SAMPLES, seed=seed))
        router = TABULAR[inner](num_tasks=num_tasks, seed=seed, **sizes, **options)
        return Dispatched(dispatcher, router, num_tasks, seed=seed)
    if name == "fixed-per-task":
        return FixedRouter.per_task(num_tasks, network.max_depth, network.num_modules)
    if name == "random":
        return RandomRouter(seed=seed)
    raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(AGENT_NAMES)}")
