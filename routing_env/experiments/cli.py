"""The ``routing-env`` command line.

``routing-env train --env DigitsMTL-v0 --agent wpl --episodes N --seed S --out DIR`` trains a
router, prints a progress bar and a final table, and writes ``DIR/results.json`` and plots
(DESIGN 3.5). ``routing-env demo`` runs the demonstration of ``make demo``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import error as gym_error

from routing_env import suite_id
from routing_env.experiments.arguments import (
    HelpFormatter,
    UsageError,
    add_device,
    add_episodes,
    device_name,
    fail,
    plain,
    positive,
)
from routing_env.experiments.demo import main as demo_main
from routing_env.experiments.runs import SB3_METHODS, majority_rate
from routing_env.settings import TRAIN_DEFAULTS


def _add_train(commands: argparse._SubParsersAction) -> None:
    from agents.factory import AGENT_NAMES

    train = commands.add_parser(
        "train",
        help="train a router and write results.json and plots",
        description=plain(run_train.__doc__),
        formatter_class=HelpFormatter,
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--env",
        default=TRAIN_DEFAULTS["env"],
        help="a suite: its Gymnasium id (DigitsMTL-v0) or name (digits-mtl)",
    )
    source.add_argument("--dataset", help="train on a user's .npz (see MultiTaskDataset.from_npz)")
    train.add_argument(
        "--agent",
        default="wpl",
        choices=(*AGENT_NAMES, *SB3_METHODS),
        metavar="AGENT",
        help=f"one of: {', '.join((*AGENT_NAMES, *SB3_METHODS))}",
    )
    add_episodes(train, TRAIN_DEFAULTS["episodes"], "training routes")
    train.add_argument("--seed", type=int, default=TRAIN_DEFAULTS["seed"])
    train.add_argument("--out", default="runs/train", help="output folder")
    train.add_argument("--eval-every", type=int, default=None, help="routes per epoch")
    train.add_argument("--lr", type=float, default=None, help="router learning rate")
    train.add_argument("--routing", choices=["layered", "recurrent"], default=None)
    train.add_argument("--num-modules", type=int, default=None)
    train.add_argument("--max-depth", type=int, default=None)
    train.add_argument(
        "--reward",
        choices=["correct", "neg_loss"],
        default=None,
        help="final reward (default: correct, +-1, for classification; neg_loss for regression)",
    )
    train.add_argument("--module-lr", type=float, default=None)
    train.add_argument("--module-batch-size", type=int, default=None)
    train.add_argument("--collaboration-reward", type=float, default=0.0)
    train.add_argument("--data-dir", default=None, help="folder of suites read from files")
    add_device(train, "its data")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="routes in flight: above 1, the batched vector env (RoutingVectorEnv); 1, the "
        f"single-sample env (default {TRAIN_DEFAULTS['num_envs']}, or 1 for the dispatched "
        "routers; SB3 methods: 16)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="write OUT/checkpoint.pt every N routes (a killed run resumes with --resume OUT)",
    )
    train.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue the run in DIR (its checkpoint) to its original --episodes",
    )


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train a router (or an SB3 method) on a suite or a user's .npz, print a progress bar and
    the final table, and write results.json, learning_curves.png and routing_map.png to --out.
    Unset environment options take the environment's defaults (routing_env/settings.py)."""
    import gymnasium as gym
    import torch

    import routing_env  # noqa: F401  (registers the ids)
    from agents.factory import default_num_envs, make_agent
    from agents.training import train
    from routing_env.experiments.plots import plot_history

    if args.resume:
        args = _resumed_arguments(args)
    if args.agent not in SB3_METHODS:
        default = default_num_envs(args.agent)
        if args.num_envs is None:
            args.num_envs = default
        elif args.num_envs > 1 and default == 1:
            raise UsageError(
                f"--num-envs {args.num_envs}: {args.agent} keeps per-route state between "
                "decisions, so it trains on the single-sample env (--num-envs 1)"
            )
    options_checked = (
        "episodes",
        "eval_every",
        "num_modules",
        "max_depth",
        "module_batch_size",
        "num_envs",
        "checkpoint_every",
    )
    for option in options_checked:
        positive(getattr(args, option), f"--{option.replace('_', '-')}")
    checkpoint_dir = None
    if args.checkpoint_every is not None:
        checkpoint_dir = args.out
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "arguments.json"), "w") as handle:
            json.dump({k: v for k, v in vars(args).items() if k != "run_verb"}, handle, indent=2)
    torch.manual_seed(args.seed)
    env_kwargs: dict[str, Any] = {
        "reward": args.reward,
        "module_lr": args.module_lr,
        "module_batch_size": args.module_batch_size,
        "routing": args.routing,
        "num_modules": args.num_modules,
        "max_depth": args.max_depth,
        "collaboration_reward": args.collaboration_reward,
        "data_dir": args.data_dir,
        "device": args.device,
    }
    # Unset keywords take the environment's own defaults (routing_env.settings).
    env_kwargs = {k: v for k, v in env_kwargs.items() if v is not None}
    if args.dataset:
        env_id, env_kwargs["dataset"] = "routing_env/Routing-v0", _user_dataset(args.dataset)
    else:
        env_id = suite_id(args.env)
    if args.agent in SB3_METHODS:
        return _train_sb3(args, env_id, env_kwargs)
    if args.num_envs > 1:
        env = gym.make_vec(
            env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point", **env_kwargs
        )
    else:
        env = gym.make(env_id, **env_kwargs)
    test_kwargs = {
        k: v
        for k, v in env_kwargs.items()
        if k in ("dataset", "reward", "data_dir", "collaboration_reward")
    }
    test_env = gym.make(env_id, split="test", network=env.unwrapped.network, **test_kwargs)
    options = {} if args.lr is None else {"lr": args.lr}
    # Offline dispatchers fit on depth-0 activations of a single-sample env.
    agent = make_agent(
        args.agent, test_env if args.num_envs > 1 else env, seed=args.seed, **options
    )
    history = train(
        agent,
        env,
        args.episodes,
        eval_env=test_env,
        seed=args.seed,
        eval_every=args.eval_every,
        progress=not args.no_progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
    )
    history.pop("resumed_at", None)
    os.makedirs(args.out, exist_ok=True)
    final = history["final"]
    results = {
        "env": env_id if not args.dataset else args.dataset,
        "agent": args.agent,
        "seed": args.seed,
        "task_type": env.unwrapped.dataset.task_type,
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "majority_rate": (
            majority_rate(env.unwrapped.dataset)
            if env.unwrapped.dataset.task_type == "classification"
            else None
        ),
        "per_task_accuracy": final["per_task_accuracy"],
        "route_entropy": final["route_entropy"],
        "modules_used": final["modules_used"],
        "routing_map": final["routing_map"],
        "extra_action": env.unwrapped.network.extra_action,
        "episodes": history["episodes"],
        "seconds": history["seconds"],
        "settings": {
            **{k: v for k, v in env_kwargs.items() if k != "dataset"},
            **network_settings(env.unwrapped.network),
            "reward": env.unwrapped.reward_kind,
            "num_envs": args.num_envs,
            **{k: v for k, v in agent.config.items() if k == "lr"},
        },
        "history": {k: v for k, v in history.items() if k != "final"},
    }
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    plot_history(history, args.out, title=f"{args.agent} on {results['env']}")
    print_table(results)
    print(f"wrote {os.path.join(args.out, 'results.json')} and the plots in {args.out}")
    return results


def _resumed_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments the run in ``--resume DIR`` was started with (its ``arguments.json``)."""
    path = os.path.join(args.resume, "arguments.json")
    if not os.path.isfile(path):
        raise UsageError(
            f"--resume {args.resume}: no arguments.json there; only a run started with "
            "--checkpoint-every can be resumed"
        )
    with open(path) as handle:
        saved = json.load(handle)
    saved.update(out=args.resume, resume=None, no_progress=args.no_progress)
    return argparse.Namespace(**saved)


def _user_dataset(path: str) -> Any:
    """A user's ``.npz``; regression targets are standardised with the training split's mean and
    standard deviation (said on the terminal), so that the default module lr does not diverge
    on targets of any scale."""
    from routing_env.datasets import MultiTaskDataset
    from routing_env.datasets.base import Split

    dataset = MultiTaskDataset.from_npz(path)
    if dataset.task_type != "regression":
        return dataset
    mean = dataset.train.y.mean(axis=0)
    scale = dataset.train.y.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    print(
        f"regression targets standardised with the training split's mean {np.round(mean, 4)} "
        f"and standard deviation {np.round(scale, 4)}; losses are in standardised units"
    )

    def standard(split: Any) -> Any:
        y = ((split.y - mean) / scale).astype(split.y.dtype)
        return Split(split.x, split.task, y)

    return MultiTaskDataset(
        standard(dataset.train),
        standard(dataset.test),
        dataset.num_tasks,
        dataset.num_classes,
        dataset.name,
        dataset.task_clusters,
        dataset.description + " (targets standardised)",
    )


def _train_sb3(args: argparse.Namespace, env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``train --agent sb3-...``: the SB3 method through the runs of ``compare``."""
    from routing_env.experiments.runs import RunSpec, run

    suite = env_kwargs.pop("dataset", None) or env_id
    settings = {k: v for k, v in env_kwargs.items() if k != "data_dir"}
    if args.num_envs is not None:
        settings["num_envs"] = args.num_envs
    points = max(1, args.episodes // args.eval_every) if args.eval_every else 10
    spec = RunSpec(
        method=args.agent,
        suite=suite,
        seed=args.seed,
        budget=args.episodes,
        points=min(points, args.episodes),
        settings=settings,
        data_dir=args.data_dir,
    )
    record = run(spec, torch_threads=args.torch_threads)
    os.makedirs(args.out, exist_ok=True)
    results = {
        "env": env_id if not args.dataset else args.dataset,
        "agent": args.agent,
        "seed": args.seed,
        "episodes": args.episodes,
        **{k: v for k, v in record.items() if k not in ("method", "suite", "seed")},
    }
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    print_table(results)
    print(f"wrote {os.path.join(args.out, 'results.json')}")
    return results


def network_settings(network: Any) -> dict[str, Any]:
    """The module settings a run's network was built with (defaults included)."""
    names = ("routing", "num_modules", "max_depth", "hidden_dim", "module_lr", "module_batch_size")
    return {name: getattr(network, name) for name in names}


def print_table(results: dict[str, Any]) -> None:
    """The final table of a training run."""
    print(
        f"\n{results['agent']} on {results['env']}, {results['episodes']} routes, "
        f"seed {results['seed']}, {results['seconds']:.0f} s"
    )
    if results.get("task_type") == "regression":
        quality = f"test loss (MSE) {results['test_loss']:.4f}"
    else:
        quality = f"test accuracy {100 * results['test_accuracy']:.2f}%"
        if results.get("majority_rate") is not None:
            quality += f" (majority rate {100 * results['majority_rate']:.2f}%: no learning)"
    print(
        f"{quality}   route entropy {results['route_entropy']:.3f} nats   modules used "
        f"{results['modules_used']}"
    )
    print("task  accuracy  most chosen action per depth (P = PASS / stop, - = not reached)")
    extra = results["extra_action"]
    for task, (accuracy, route) in enumerate(
        zip(results["per_task_accuracy"], results["routing_map"], strict=True)
    ):
        cells = " ".join("-" if a < 0 else "P" if a == extra else str(a) for a in route)
        print(f"{task:>4}  {100 * accuracy:7.2f}%  {cells}")


#: Verbs defined in modules of their own: each has ``add_parser(commands)``, whose parser sets
#: the default ``run_verb`` (the function that runs the parsed arguments).
VERB_MODULES = (
    "routing_env.experiments.compare",
    "routing_env.experiments.report",
    "routing_env.experiments.bench_nonstationarity",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``routing-env`` console script."""
    parser = argparse.ArgumentParser(
        prog="routing-env",
        description=plain(__doc__),
        epilog="Bad input ends with one line 'routing-env: error: ...' and exit code 2; set "
        "ROUTING_ENV_TRACEBACK=1 to see the traceback instead.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="per-task WPL routers on DigitsMTL, with references",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--episodes", type=int, default=200_000, help="training routes of WPL")
    demo.add_argument("--seed", type=int, default=0)
    _add_train(commands)
    for name in VERB_MODULES:
        importlib.import_module(name).add_parser(commands)
    for command in (demo, commands.choices["train"]):
        command.add_argument(
            "--torch-threads",
            type=int,
            default=1,
            help="torch threads (default 1: one sample per step gains nothing from more, and "
            "extra threads spin against other jobs)",
        )
    args = parser.parse_args(argv)
    import torch

    try:
        threads = getattr(args, "torch_threads", 1)
        positive(threads, "--torch-threads")
        if getattr(args, "device", None) is not None:
            args.device = device_name(args.device)
        # The verbs of their own modules run one torch thread per run (experiments.runs).
        torch.set_num_threads(threads)
        if args.command == "demo":
            demo_main(episodes=args.episodes, seed=args.seed)
        elif args.command == "train":
            run_train(args)
        else:
            args.run_verb(args)
    except UsageError as error:
        fail(str(error))
    except (ValueError, OSError, gym_error.Error, FloatingPointError, ImportError) as error:
        # Bad arguments, bad or missing data, a diverging module loss: one line, exit code 2.
        if os.environ.get("ROUTING_ENV_TRACEBACK"):
            raise
        fail(f"{error} ({type(error).__name__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
