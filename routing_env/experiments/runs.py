"""One training run of any method, described by a :class:`RunSpec`; the unit of a grid.

A method is named by a string:

* a router of :mod:`agents.factory` (``"wpl"``, ``"q"``, ``"reinforce"``, ``"single-wpl"``,
  ``"reinforce-approx"``, ...), trained by :func:`agents.train` on a
  :class:`~routing_env.vector.RoutingVectorEnv` of ``num_envs`` sub-environments (default
  :func:`agents.default_num_envs`: 256, or 1 for the dispatched routers; 1 is the
  single-sample :class:`~routing_env.env.RoutingEnv`), with the router settings of
  ``routing-env train``;
* a Stable-Baselines3 algorithm, ``"sb3-ppo"``, ``"sb3-a2c"``, ``"sb3-dqn"`` or
  ``"sb3-maskable-ppo"`` (needs the ``sb3`` extra), trained by its own ``learn`` on the vector
  env through :func:`agents.sb3.make_vec_env`;
* a non-routed baseline of :mod:`routing_env.baselines` (``"task-specific-1-fc"``,
  ``"cross-stitch"``, ``"soft-mixture-all-fc"``, ...), trained by
  :func:`routing_env.baselines.train_baseline` on the same data.

Every run trains on ``budget`` samples (routes: one sample each), evaluates greedily on the
whole test split ``points`` times, and returns one flat record (:func:`run`) with the same
keys whatever the method, so a grid of runs can be tabulated and plotted together. The
environment settings default to the environment's own (:mod:`routing_env.settings`, those of
``routing-env train``), the module settings the baselines use too (module lr, batch): all
methods see the same data with the same optimiser settings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agents.training import jsonable
from routing_env.experiments.run_log import write_run_log
from routing_env.settings import (
    NETWORK_DEFAULTS,
    RUN_ENV_SETTINGS,
    TRAIN_DEFAULTS,
    router_defaults,
)

SB3_METHODS = ("sb3-ppo", "sb3-a2c", "sb3-dqn", "sb3-maskable-ppo")

#: Environment settings a run spec may set (the rest of a spec's ``settings`` goes to the
#: router's constructor, e.g. ``lr``).
ENV_SETTINGS = RUN_ENV_SETTINGS
#: Settings of the run itself, neither the env's nor the router's.
RUN_SETTINGS = ("num_envs",)


@dataclass(frozen=True)
class RunSpec:
    """What to run: one method on one suite with one seed and a budget.

    Args:
        method: a router, SB3 or baseline name (see the module docstring).
        suite: a suite name (``"digits-mtl"``, ...) or an ``.npz`` path.
        seed: seeds the data order, the module initialisation and the method's own draws.
        budget: training samples (routes); for SB3, ``budget * max_depth`` environment steps
            in layered routing (every route takes ``max_depth`` decisions).
        points: evaluations on the test split during training (learning curves).
        settings: environment settings (:data:`ENV_SETTINGS`), ``num_envs`` (routes in flight
            for routers, default :func:`agents.default_num_envs`; 1 = the single-sample env;
            SB3 methods: 16), and router options (``lr``, ...).
        data_dir: folder of suites read from files.
        out_dir: where the run's log goes (``metrics.csv``, TensorBoard events when
            ``tensorboard`` is installed); ``None`` writes nothing.
    """

    method: str
    suite: str
    seed: int
    budget: int
    points: int = 10
    settings: Mapping[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    out_dir: str | None = None

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be a positive number of samples, got {self.budget}")
        if not 1 <= self.points <= self.budget:
            raise ValueError(f"points must be in 1..budget, got {self.points}")
        unknown = set(self.settings) - set(ENV_SETTINGS) - set(RUN_SETTINGS)
        if method_kind(self.method) != "router" and unknown:
            raise ValueError(
                f"settings {sorted(unknown)} are router options; {self.method!r} is not a router"
            )

    def label(self) -> str:
        """``method/suite/seed<k>``: the run's name in logs and folders."""
        return f"{self.method}/{os.path.basename(self.suite)}/seed{self.seed}"


def method_names() -> dict[str, tuple[str, ...]]:
    """The method names by kind: ``router``, ``sb3`` (listed even when SB3 is missing) and
    ``baseline``."""
    from agents.factory import AGENT_NAMES
    from routing_env.baselines import BASELINE_NAMES

    return {"router": AGENT_NAMES, "sb3": SB3_METHODS, "baseline": BASELINE_NAMES}


def method_kind(method: str) -> str:
    """``"router"``, ``"sb3"`` or ``"baseline"``.

    Raises:
        ValueError: an unknown method, listing the known ones.
    """
    for kind, names in method_names().items():
        if method in names:
            return kind
    known = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in method_names().items())
    raise ValueError(f"unknown method {method!r}; known methods are {known}")


def check_methods(methods: list[str]) -> None:
    """Fail early, naming the problem, on unknown methods and on SB3 methods without SB3."""
    for method in methods:
        if method_kind(method) == "sb3":
            try:
                import sb3_contrib  # noqa: F401
                import stable_baselines3  # noqa: F401
            except ImportError as error:
                raise ImportError(
                    f"method {method!r} needs Stable-Baselines3: pip install 'routing-env[sb3]'"
                ) from error


def run(spec: RunSpec, torch_threads: int = 1) -> dict[str, Any]:
    """Train and evaluate ``spec`` at ``torch_threads`` torch threads; one record (plain JSON
    types).

    Keys: ``method``, ``kind``, ``suite``, ``seed``, ``budget``, ``test_accuracy``,
    ``per_task_accuracy``, ``route_entropy`` and ``modules_used`` (for the baselines, of their
    gates, ``None`` without one), ``routing_map`` (routers: task x depth -> most chosen action;
    otherwise ``None``), ``extra_action`` (routers: the index of PASS / stop),
    ``majority_rate`` (accuracy of each task's most frequent test label), ``seconds``
    (training wall time), ``wall_seconds`` (with set-up and evaluations), ``curve`` (lists
    ``samples``, ``test_accuracy``, ``route_entropy``, ``modules_used``), ``settings`` and
    ``log`` (files written).

    With ``spec.out_dir``, a run whose record is already there (``record.json``, written at
    its end) is not run again but read, and a router run that was interrupted resumes from its
    checkpoint there: an interrupted ``compare`` or ``report`` continues instead of starting
    over.

    One torch thread by default: the runs' tensors are a few dozen rows, and at more threads
    every small ``tanh``, ``softmax`` or ``linear`` waits for a worker thread, which on a machine
    whose cores are busy (parallel runs, other jobs) costs milliseconds per op; SB3's PPO then
    runs about 20x slower (``benchmarks/sb3_threads.py``). ``routing-env train
    --torch-threads`` passes its own.
    """
    import torch

    from routing_env.env import resolve_dataset

    done = None if spec.out_dir is None else os.path.join(spec.out_dir, "record.json")
    record = recorded(spec)
    if record is not None:
        return record
    if done is not None and os.path.isfile(done):
        # Another run's results and checkpoint: this spec starts afresh.
        stale = os.path.join(spec.out_dir, "checkpoint.pt")
        if os.path.exists(stale):
            os.remove(stale)
    torch.set_num_threads(torch_threads)
    kind = method_kind(spec.method)
    dataset = resolve_dataset(spec.suite, spec.data_dir)
    trainer = {"router": _run_router, "sb3": _run_sb3, "baseline": _run_baseline}[kind]
    began = time.perf_counter()
    record = trainer(spec, dataset)
    record.update(
        method=spec.method,
        kind=kind,
        suite=spec.suite,
        seed=spec.seed,
        budget=spec.budget,
        majority_rate=majority_rate(dataset),
        wall_seconds=time.perf_counter() - began,
    )
    record["log"] = write_run_log(record["curve"], spec.out_dir) if spec.out_dir else []
    if done is not None:
        record["spec"] = spec_dict(spec)
        record["defaults"] = run_defaults(spec.method)
        with open(done + ".tmp", "w") as handle:
            json.dump(record, handle, default=jsonable)
        os.replace(done + ".tmp", done)
    return record


def recorded(spec: RunSpec) -> dict[str, Any] | None:
    """The record a finished run of ``spec`` left in ``spec.out_dir`` (``record.json`` of the
    same spec, :func:`records_spec`), or ``None``: :func:`run` reads it instead of running
    again."""
    if spec.out_dir is None:
        return None
    done = os.path.join(spec.out_dir, "record.json")
    if not os.path.isfile(done):
        return None
    with open(done) as handle:
        record = json.load(handle)
    return record if records_spec(record, spec) else None


def records_spec(record: Mapping[str, Any], spec: RunSpec) -> bool:
    """Whether ``record`` is a finished run of ``spec`` as it would run now: the same spec and,
    where the record has them (records from before they were kept have not), the same
    defaults (:func:`run_defaults`), so that a changed default runs again instead of being read
    as if it were the new one."""
    if record.get("spec") != spec_dict(spec):
        return False
    return "defaults" not in record or record["defaults"] == run_defaults(spec.method)


def run_defaults(method: str) -> dict[str, Any]:
    """The defaults of :mod:`routing_env.settings` that a run of ``method`` takes where its spec
    says nothing: the network's, the router's and the number of envs (as plain JSON data)."""
    defaults = {
        "network": NETWORK_DEFAULTS,
        "router": router_defaults(method),
        "num_envs": TRAIN_DEFAULTS["num_envs"],
    }
    return json.loads(json.dumps(defaults, default=jsonable))


def majority_rate(dataset: Any) -> float:
    """Accuracy, on the test split, of predicting each task's most frequent test label: the
    floor every method starts from (90% on the one-vs-rest suites)."""
    test = dataset.split("test")
    hits = 0
    for task in np.unique(test.task):
        labels = test.y[test.task == task]
        hits += int(np.bincount(labels.astype(np.int64)).max())
    return hits / len(test.y)


def env_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The environment settings among ``settings``, over those of ``routing-env train``."""
    chosen = {k: v for k, v in settings.items() if k in ENV_SETTINGS}
    defaults = {k: NETWORK_DEFAULTS[k] for k in ("module_lr", "module_batch_size")}
    return {**defaults, **chosen}


def _router_options(spec: RunSpec) -> dict[str, Any]:
    own = {
        k: v for k, v in spec.settings.items() if k not in ENV_SETTINGS and k not in RUN_SETTINGS
    }
    return {**router_defaults(spec.method), **own}


def _envs(spec: RunSpec, dataset: Any, num_envs: int) -> tuple[Any, Any]:
    """The training env (single or vector) and the test env sharing its network."""
    from routing_env.env import RoutingEnv
    from routing_env.vector import RoutingVectorEnv

    settings = env_settings(spec.settings)
    if num_envs > 1:
        env: Any = RoutingVectorEnv(num_envs, dataset, **settings)
    else:
        env = RoutingEnv(dataset, **settings)
    test_settings = {k: v for k, v in settings.items() if k in ("reward", "collaboration_reward")}
    return env, RoutingEnv(dataset, split="test", network=env.network, **test_settings)


def _run_router(spec: RunSpec, dataset: Any) -> dict[str, Any]:
    from agents import default_num_envs, make_agent, train
    from routing_env.env import RoutingEnv

    num_envs = int(spec.settings.get("num_envs", default_num_envs(spec.method)))
    env, test = _envs(spec, dataset, num_envs)
    # Offline dispatchers fit on depth-0 activations of a single-sample env.
    sizing_env = env if isinstance(env, RoutingEnv) else test
    agent = make_agent(spec.method, sizing_env, seed=spec.seed, **_router_options(spec))
    history = train(
        agent,
        env,
        spec.budget,
        eval_env=test,
        seed=spec.seed,
        eval_every=max(1, spec.budget // spec.points),
        progress=False,
        checkpoint_dir=spec.out_dir,
    )
    history.pop("resumed_at", None)
    final = history["final"]
    return {
        "test_accuracy": final["test_accuracy"],
        "per_task_accuracy": final["per_task_accuracy"],
        "route_entropy": final["route_entropy"],
        "modules_used": final["modules_used"],
        "routing_map": final["routing_map"],
        "extra_action": test.network.extra_action,
        "seconds": history["seconds"],
        "curve": {
            "samples": history["episode"],
            "test_accuracy": history["test_accuracy"],
            "route_entropy": history["route_entropy"],
            "modules_used": history["modules_used"],
        },
        "settings": {**env_settings(spec.settings), **_router_options(spec), "num_envs": num_envs},
    }


def _run_sb3(spec: RunSpec, dataset: Any) -> dict[str, Any]:
    import torch

    from agents import evaluate
    from agents.sb3 import RouterEvalCallback, make_vec_env
    from routing_env.env import RoutingEnv

    settings = env_settings(spec.settings)
    num_envs = int(spec.settings.get("num_envs", 16))
    env = make_vec_env(dataset, num_envs=num_envs, **settings)
    network = env.get_attr("network")[0]
    test = RoutingEnv(dataset, split="test", network=network, reward=settings.get("reward"))
    env.seed(spec.seed)
    torch.manual_seed(spec.seed)
    # PPO's rollout shortened to 256 steps per env (16 envs), so that a budget of tens of
    # thousands of routes still holds many updates.
    rollout = {"n_steps": 256} if spec.method in ("sb3-ppo", "sb3-maskable-ppo") else {}
    model = sb3_model(spec.method, env, spec.seed, **rollout)
    steps = spec.budget * network.max_depth
    evaluation = RouterEvalCallback(test, max(1, steps // spec.points))
    model.learn(steps, callback=evaluation)
    final = evaluate(model, test)
    curve = evaluation.history
    return {
        "test_accuracy": final["accuracy"],
        "per_task_accuracy": final["per_task_accuracy"],
        "route_entropy": final["route_entropy"],
        "modules_used": final["modules_used"],
        "routing_map": final["routing_map"],
        "extra_action": network.extra_action,
        "seconds": curve["seconds"][-1],
        "curve": {
            "samples": [t // network.max_depth for t in curve["timesteps"]],
            "test_accuracy": curve["test_accuracy"],
            "route_entropy": curve["route_entropy"],
            "modules_used": curve["modules_used"],
        },
        "settings": {**settings, "num_envs": num_envs, "total_timesteps": steps},
    }


def sb3_model(method: str, env: Any, seed: int, **options: Any) -> Any:
    """The Stable-Baselines3 model of ``method`` (:data:`SB3_METHODS`) on ``env`` with
    ``MultiInputPolicy``, SB3's defaults and ``options`` over them, on the CPU.

    Raises:
        ValueError: an unknown SB3 method.
    """
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, DQN, PPO

    algorithms = {"sb3-ppo": PPO, "sb3-maskable-ppo": MaskablePPO, "sb3-a2c": A2C, "sb3-dqn": DQN}
    if method not in algorithms:
        raise ValueError(f"unknown SB3 method {method!r}; expected one of {SB3_METHODS}")
    options = {"seed": seed, "device": "cpu", "verbose": 0, **options}
    return algorithms[method]("MultiInputPolicy", env, **options)


def _run_baseline(spec: RunSpec, dataset: Any) -> dict[str, Any]:
    from routing_env.baselines import train_baseline

    settings = env_settings(spec.settings)
    num_modules = settings.get("num_modules") or dataset.num_tasks
    history = train_baseline(
        spec.method,
        dataset,
        spec.budget,
        seed=spec.seed,
        lr=settings["module_lr"],
        batch_size=settings["module_batch_size"],
        optimizer=settings.get("module_optimizer", "sgd"),
        hidden_dim=settings.get("hidden_dim", 64),
        num_modules=num_modules,
        max_depth=settings.get("max_depth", 3),
        eval_every=max(1, spec.budget // spec.points),
        lr_anneal_every=settings.get("module_lr_anneal_every"),
        device=settings.get("device", "cpu"),
    )
    final = history["final"]
    return {
        "test_accuracy": final["test_accuracy"],
        "per_task_accuracy": final["per_task_accuracy"],
        "route_entropy": final.get("route_entropy"),
        "modules_used": final.get("modules_used"),
        "routing_map": None,
        "parameters": history.get("parameters"),
        "seconds": history["seconds"],
        "curve": {
            "samples": history["episode"],
            "test_accuracy": history["test_accuracy"],
            "route_entropy": history.get("route_entropy") or [None] * len(history["episode"]),
            "modules_used": history.get("modules_used") or [None] * len(history["episode"]),
        },
        "settings": {**settings, "num_modules": num_modules},
    }


def spec_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as plain data (for results files)."""
    return {**asdict(spec), "settings": dict(spec.settings)}
