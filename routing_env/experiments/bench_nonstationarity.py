"""``routing-env bench-nonstationarity``: the non-stationarity benchmark protocol.

For every agent, condition and seed the verb builds a fresh environment, trains the agent with
:func:`routing_env.experiments.nonstationarity.measure_nonstationarity` (all metrics every
``--every`` routes) and prints one table row per agent and condition, averaged over the seeds.
Conditions (DESIGN 6):

* ``trained``: the modules train on the agent's routes (the non-stationary MDP);
* ``frozen``: ``train_modules=False`` from the start (the stationary control);
* ``pretrained``: the modules first train for ``--pretrain-routes`` routes under a random
  router, then are frozen (:func:`agents.pretrain_modules`): stationary, with useful modules.

The protocol, its defaults and how to report numbers are in ``docs/benchmark.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import numpy as np

from agents.training import jsonable
from routing_env import suite_id
from routing_env.experiments.arguments import (
    SEEDS_HELP,
    HelpFormatter,
    UsageError,
    add_episodes,
    parse_seeds,
    plain,
    positive,
)
from routing_env.experiments.runs import SB3_METHODS
from routing_env.settings import NETWORK_DEFAULTS

CONDITIONS = ("trained", "frozen", "pretrained")
#: Columns of the table: (summary key, header, format).
COLUMNS = (
    ("final_accuracy", "accuracy", "{:8.3f}"),
    ("module_drift", "mod.drift", "{:9.4f}"),
    ("return_drift", "ret.drift", "{:9.4f}"),
    ("final_entropy", "entropy", "{:7.3f}"),
    ("final_modules_used", "modules", "{:7.1f}"),
    ("map_stability", "map.stab", "{:8.3f}"),
    ("final_ari", "ARI", "{:6.3f}"),
    ("final_ari_per_depth", "ARI/d", "{:6.3f}"),
)


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bench-nonstationarity`` verb to the ``routing-env`` sub-commands."""
    bench = commands.add_parser(
        "bench-nonstationarity",
        help="measure module drift, return drift, collapse and cluster recovery",
        description=plain(__doc__),
        formatter_class=HelpFormatter,
    )
    bench.add_argument(
        "--agent",
        default="wpl,q,advantage,reinforce",
        help="comma-separated agent names (those of `routing-env train`, or "
        f"{', '.join(SB3_METHODS)})",
    )
    bench.add_argument(
        "--suite", default="SyntheticMTL-v0", help="suite (synthetic-mtl or SyntheticMTL-v0)"
    )
    add_episodes(bench, 100_000, "training routes per run")
    bench.add_argument("--every", type=int, default=None, help="routes between measurements")
    bench.add_argument("--seeds", type=parse_seeds, default="3", help=SEEDS_HELP)
    bench.add_argument(
        "--conditions",
        default="trained,frozen",
        help=f"comma-separated conditions among {', '.join(CONDITIONS)}",
    )
    bench.add_argument("--pretrain-routes", type=int, default=None, help="default: --episodes")
    bench.add_argument(
        "--module-optimizer", default="sgd", choices=["sgd", "adam", "rmsprop", "adagrad"]
    )
    bench.add_argument("--module-lr", type=float, default=None, help="default: train's (0.3)")
    bench.add_argument("--module-batch-size", type=int, default=None, help="routes per update")
    rates = bench.add_mutually_exclusive_group()
    rates.add_argument("--router-lr", type=float, default=None, help="the agents' learning rate")
    rates.add_argument(
        "--lr-ratio", type=float, default=None, help="router lr = ratio x module lr (000 7.2.2)"
    )
    bench.add_argument(
        "--squash-kappa", type=float, default=0.0, help="exploration squashing (000 eq. 7.4)"
    )
    bench.add_argument("--eval-episodes", type=int, default=None, help="default: test split")
    bench.add_argument("--num-envs", type=int, default=1, help="routes in flight (vector env)")
    bench.add_argument(
        "--out", default=None, help="folder for results.json and nonstationarity.png"
    )
    bench.set_defaults(run_verb=run)
    return bench


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the protocol as the parsed arguments say; print the table; write results.json."""
    from agents.factory import AGENT_NAMES

    agent_names = _names(args.agent, "--agent")
    unknown = [n for n in agent_names if n not in AGENT_NAMES and n not in SB3_METHODS]
    if unknown:
        raise UsageError(
            f"bench-nonstationarity: unknown agent(s) {', '.join(unknown)}; known: "
            f"{', '.join((*AGENT_NAMES, *SB3_METHODS))}"
        )
    conditions = _names(args.conditions, "--conditions")
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise UsageError(f"bench-nonstationarity: unknown condition(s) {', '.join(bad)}")
    seeds = args.seeds
    for option in ("episodes", "every", "num_envs"):
        positive(getattr(args, option), f"--{option.replace('_', '-')}")
    every = args.every or max(1, args.episodes // 10)
    settings = _settings(args, every)

    runs = []
    for name in agent_names:
        for condition in conditions:
            for seed in seeds:
                record = _finished_run(args.out, name, condition, seed, settings)
                if record is None:
                    began = time.perf_counter()
                    history = run_one(name, condition, seed, settings)
                    record = {
                        "agent": name,
                        "condition": condition,
                        "seed": seed,
                        "seconds": time.perf_counter() - began,
                        "summary": history["summary"],
                        "history": history,
                    }
                    _keep_run(args.out, record, settings)
                print(
                    f"{name:>12} {condition:>10} seed {seed}: accuracy "
                    f"{record['summary']['final_accuracy']:.3f} ({record['seconds']:.0f} s)",
                    flush=True,
                )
                runs.append(record)
    rows = table_rows(runs)
    print_table(rows, settings)
    results = {"protocol": settings, "table": rows, "runs": runs}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as handle:
            json.dump(results, handle, indent=2, default=jsonable)
        from routing_env.experiments.plots import plot_nonstationarity

        plot_nonstationarity(runs, os.path.join(args.out, "nonstationarity.png"))
    return results


def _run_file(out: str | None, name: str, condition: str, seed: int) -> str | None:
    return None if out is None else os.path.join(out, "runs", f"{name}-{condition}-seed{seed}.json")


def _finished_run(
    out: str | None, name: str, condition: str, seed: int, settings: dict[str, Any]
) -> dict[str, Any] | None:
    """The record of a run an earlier, interrupted call finished with the same protocol."""
    path = _run_file(out, name, condition, seed)
    if path is None or not os.path.isfile(path):
        return None
    with open(path) as handle:
        record = json.load(handle)
    return record if record.get("protocol") == json.loads(json.dumps(settings)) else None


def _keep_run(out: str | None, record: dict[str, Any], settings: dict[str, Any]) -> None:
    """Write one run's record under ``out/runs`` as it finishes, so that a re-run skips it."""
    path = _run_file(out, record["agent"], record["condition"], record["seed"])
    if path is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump({**record, "protocol": settings}, handle, default=jsonable)
    os.replace(path + ".tmp", path)


def _names(text: str, option: str) -> list[str]:
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise UsageError(f"bench-nonstationarity: {option} is empty")
    return names


def _settings(args: argparse.Namespace, every: int) -> dict[str, Any]:
    module_lr = args.module_lr if args.module_lr is not None else NETWORK_DEFAULTS["module_lr"]
    batch = args.module_batch_size or NETWORK_DEFAULTS["module_batch_size"]
    router_lr = args.router_lr
    if args.lr_ratio is not None:
        router_lr = args.lr_ratio * module_lr
    suite = suite_id(args.suite)
    return {
        "suite": suite,
        "routes": args.episodes,
        "every": every,
        "seeds": args.seeds,
        "pretrain_routes": args.pretrain_routes or args.episodes,
        "module_optimizer": args.module_optimizer,
        "module_lr": module_lr,
        "module_batch_size": batch,
        "router_lr": router_lr,
        "squash_kappa": args.squash_kappa,
        "eval_episodes": args.eval_episodes,
        "num_envs": args.num_envs,
    }


def run_one(name: str, condition: str, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    """One run of the protocol: a fresh env and agent, trained and measured."""
    import gymnasium as gym
    import torch

    import routing_env  # noqa: F401  (registers the ids)
    from agents.training import pretrain_modules
    from routing_env.experiments.nonstationarity import measure_nonstationarity

    torch.manual_seed(seed)
    env_kwargs = {
        "module_lr": settings["module_lr"],
        "module_batch_size": settings["module_batch_size"],
        "module_optimizer": settings["module_optimizer"],
        "squash_kappa": settings["squash_kappa"],
        "train_modules": condition != "frozen",
    }
    sb3 = name in SB3_METHODS
    if settings["num_envs"] > 1 and not sb3:
        env = gym.make_vec(
            settings["suite"],
            num_envs=settings["num_envs"],
            vectorization_mode="vector_entry_point",
            **env_kwargs,
        )
    else:
        env = gym.make(settings["suite"], **env_kwargs)
    if condition == "pretrained":
        pretrain_modules(env, settings["pretrain_routes"], router="random", seed=seed)
    agent = _sb3_agent(name, env, seed, settings) if sb3 else _our_agent(name, env, seed, settings)
    return measure_nonstationarity(
        agent,
        env,
        settings["routes"],
        settings["every"],
        eval_episodes=settings["eval_episodes"],
        seed=None if condition == "pretrained" else seed,
    )


def _our_agent(name: str, env: Any, seed: int, settings: dict[str, Any]) -> Any:
    from agents.factory import make_agent

    options = {}
    if settings["router_lr"] is not None:
        options["lr"] = settings["router_lr"]
    return make_agent(name, env, seed=seed, **options)


def _sb3_agent(name: str, env: Any, seed: int, settings: dict[str, Any]) -> Any:
    """An SB3 model learning on ``env`` (SB3 wraps it in its own DummyVecEnv), SB3's
    defaults but for ``--router-lr``."""
    from routing_env.experiments.runs import check_methods, sb3_model

    try:
        check_methods([name])
    except ImportError as error:
        raise UsageError(str(error)) from None
    options = {} if settings["router_lr"] is None else {"learning_rate": settings["router_lr"]}
    return sb3_model(name, env, seed, **options)


def table_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per agent and condition (in run order): each summary figure's mean and standard
    deviation over the seeds (``nan`` where it does not apply, e.g. ARI without clusters)."""
    summaries: dict[tuple[str, str], list[dict[str, float]]] = {}
    for record in runs:
        summaries.setdefault((record["agent"], record["condition"]), []).append(record["summary"])
    rows = []
    for (agent, condition), per_seed in summaries.items():
        row: dict[str, Any] = {"agent": agent, "condition": condition, "runs": len(per_seed)}
        for key, _, _ in COLUMNS:
            values = np.asarray([summary[key] for summary in per_seed], dtype=float)
            finite = np.isfinite(values).any()
            row[key] = float(np.nanmean(values)) if finite else math.nan
            row[f"{key}_std"] = float(np.nanstd(values)) if finite else math.nan
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], settings: dict[str, Any]) -> None:
    """The benchmark table (mean over seeds; ``-`` where a figure does not apply)."""
    ratio = (
        "agent default"
        if settings["router_lr"] is None
        else f"{settings['router_lr'] / settings['module_lr']:g}"
    )
    print(
        f"\nnon-stationarity benchmark: {settings['suite']}, {settings['routes']} routes, "
        f"measured every {settings['every']}, seeds {settings['seeds']}; modules "
        f"{settings['module_optimizer']} lr {settings['module_lr']:g} batch "
        f"{settings['module_batch_size']}; router/module lr ratio {ratio}; "
        f"squash kappa {settings['squash_kappa']:g}"
    )
    header = f"{'agent':>18} {'condition':>10} " + " ".join(
        f"{title:>{len(fmt.format(0.0))}}" for _, title, fmt in COLUMNS
    )
    print(header)
    for row in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            width = len(fmt.format(0.0))
            value = row[key]
            cells.append(f"{'-':>{width}}" if math.isnan(value) else fmt.format(value))
        print(f"{row['agent']:>18} {row['condition']:>10} " + " ".join(cells))
