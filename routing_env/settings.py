"""One home for the defaults of the environments, the routers and the runs.

The environment's defaults are the best settings measured (DESIGN 7, "Settings"), so that
``gym.make(id)`` with ``agents.make_agent(name, env)`` is what ``routing-env train`` runs, and
``compare``, ``report`` and ``bench-nonstationarity`` read their defaults from here too.

How the module settings were chosen: a sweep of per-task WPL (lr 0.5) on DigitsMTL, 3 routed
layers x 10 modules, greedy test accuracy on 1,000 test samples at 100k / 150k / 300k routes
(seeds 0-2 unless said):

* reward -loss, module lr 0.1 (the default before): 95.5 / 94.7 / 95.6% (seed 0; 97% only after
  500k routes, 99.4% at 1M);
* reward -loss, module lr 0.3: 93.3-95.9 / 97.4-98.6 / 97.6-99.1%;
* reward +-1, module lr 0.1: 91.8-92.7 / 96.2-98.0 / 97.4-99.0%;
* reward +-1, module lr 0.3 (these defaults): 98.0-98.4% at 100k (seeds 1-2), 98.2-99.3% from
  200k on; seed 0 kept rising to 99.6% at 1M routes.

Worse: a module update per route (batch 1), the collaboration reward 0.3 of ``001`` sec. 4, WPL
lr 0.3. The reward is left to the environment: +-1 for classification, -loss for regression (the
only one it has). Faster modules break the symmetry sooner: a route whose modules learn fast
quickly earns more than the others, and WPL follows it.
"""

from __future__ import annotations

from typing import Any

#: The routed network's defaults. Two more depend on the data: ``num_modules`` defaults to the
#: number of tasks (``001`` section 4) and ``trunk`` to ``"conv"`` for image inputs, else
#: ``"none"``.
NETWORK_DEFAULTS: dict[str, Any] = {
    "routing": "layered",
    "max_depth": 3,
    "hidden_dim": 64,
    "readout": "shared",
    "module_lr": 0.3,
    "module_optimizer": "sgd",
    "module_batch_size": 16,
    "module_lr_anneal_every": None,
    "device": "cpu",
}

#: Router settings that differ from the agent classes' own defaults, by ``make_agent`` name.
#: WPL's baseline and policy share one learning rate, so its effective step on the advantage is
#: ``lr * (1 - lr)``, largest at 0.5; with 0.1-0.2 per-task WPL stays at the 90% majority rate
#: of DigitsMTL for over 100k routes; 0.5 breaks the symmetry first.
#: Tabular Q-learning with the class's lr 0.1 and epsilon 0.1 learns DigitsMTL for about 20k
#: routes (94%) and then falls back to exactly the 90% majority rate: on the (task, depth)
#: table every action before the last depth has the same eq. 3.2 target, so exploration raises
#: the untried actions to the greedy one's value and the routes drift; and lr 0.1 on +-1
#: rewards makes the values noisier than the gaps between modules. lr 0.01 with epsilon 0.01
#: keeps each task's routes long enough for the modules to specialise: 99.1-99.3% at 100k
#: routes (seeds 0-2), 99.7% at 1M (seed 0) (``docs/results.md``, "Tabular Q-learning on
#: DigitsMTL"; ``benchmarks/q_learning_digits.py``).
ROUTER_DEFAULTS: dict[str, dict[str, Any]] = {
    "wpl": {"lr": 0.5},
    "q": {"lr": 0.01, "epsilon": 0.01},
}

#: Environment settings that a run (``routing-env compare``, ``report``, a ``RunSpec``) may set;
#: the rest of a run's settings go to the router's constructor (e.g. ``lr``).
RUN_ENV_SETTINGS: tuple[str, ...] = (
    "routing",
    "num_modules",
    "max_depth",
    "hidden_dim",
    "reward",
    "collaboration_reward",
    "module_lr",
    "module_optimizer",
    "module_batch_size",
    "module_lr_anneal_every",
    "device",
)

#: Defaults of a training run (``routing-env train``, ``agents.train``).
#: ``num_envs``: routes in flight, the vector env's sub-environments, for routers that route
#: batches (``agents.factory.default_num_envs``; see its docstring for the measurement).
TRAIN_DEFAULTS: dict[str, Any] = {
    "episodes": 100_000,
    "seed": 0,
    "env": "DigitsMTL-v0",
    "num_envs": 256,
}


def router_defaults(name: str) -> dict[str, Any]:
    """The settings router ``name`` is built with unless told otherwise (empty: the class's)."""
    return dict(ROUTER_DEFAULTS.get(name, {}))


#: Aggregate statistics of ``compare`` and ``report`` (``routing_env.experiments.aggregate``):
#: bootstrap resamples, the seed of the bootstrap and the coverage of its intervals. rliable's
#: own defaults are 50,000 resamples for intervals and 2,000 for performance profiles. With
#: 1,000, a 95% bound of five runs moves by about 4% of the interval's width from one bootstrap
#: seed to another, and a report's statistics (4 suites, 9 methods, 5 seeds, 7 pairs) take
#: about a CPU minute, most of it the probability of improvement (scipy's Mann-Whitney U per
#: suite and resample; about 7 s a pair); ``benchmarks/aggregate_stats.py`` measures both.
#: Tests pass 200; pass more (``--bootstrap-reps``) for a committed report.
AGGREGATE_DEFAULTS: dict[str, Any] = {"reps": 1000, "seed": 0, "level": 0.95}
