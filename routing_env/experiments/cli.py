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

from routing_env.settings import TRAIN_DEFAULTS


def _add_train(commands: argparse._SubParsersAction) -> None:
    from agents.factory import AGENT_NAMES

    train = commands.add_parser("train", help="train a router and write results.json and plots")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--env", default=TRAIN_DEFAULTS["env"], help="a registered suite id")
    source.add_argument("--dataset", help="train on a user's .npz (see MultiTaskDataset.from_npz)")
    train.add_argument(
        "--agent",
        default="wpl",
        choices=AGENT_NAMES,
        metavar="AGENT",
        help=f"one of: {', '.join(AGENT_NAMES)}",
    )
    train.add_argument(
        "--episodes", type=int, default=TRAIN_DEFAULTS["episodes"], help="training routes"
    )
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
    train.add_argument("--no-progress", action="store_true")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train as the parsed ``train`` arguments say; print the table; write the results."""
    import gymnasium as gym
    import torch

    import routing_env  # noqa: F401  (registers the ids)
    from agents.factory import make_agent
    from agents.training import train
    from routing_env.experiments.plots import plot_history

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
    }
    # Unset keywords take the environment's own defaults (routing_env.settings).
    env_kwargs = {k: v for k, v in env_kwargs.items() if v is not None}
    if args.dataset:
        env_id, env_kwargs["dataset"] = "routing_env/Routing-v0", args.dataset
    else:
        env_id = args.env if "/" in args.env else f"routing_env/{args.env}"
    env = gym.make(env_id, **env_kwargs)
    test_kwargs = {
        k: v
        for k, v in env_kwargs.items()
        if k in ("dataset", "reward", "data_dir", "collaboration_reward")
    }
    test_env = gym.make(env_id, split="test", network=env.unwrapped.network, **test_kwargs)
    options = {} if args.lr is None else {"lr": args.lr}
    agent = make_agent(args.agent, env, seed=args.seed, **options)
    history = train(
        agent,
        env,
        args.episodes,
        eval_env=test_env,
        seed=args.seed,
        eval_every=args.eval_every,
        progress=not args.no_progress,
    )
    os.makedirs(args.out, exist_ok=True)
    final = history["final"]
    results = {
        "env": env_id if not args.dataset else args.dataset,
        "agent": args.agent,
        "seed": args.seed,
        "test_accuracy": final["test_accuracy"],
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
            **{k: v for k, v in agent.config.items() if k == "lr"},
        },
        "history": {k: v for k, v in history.items() if k != "final"},
    }
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    plot_history(history, args.out, title=f"{args.agent} on {results['env']}")
    print_table(results)
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
    print(
        f"test accuracy {100 * results['test_accuracy']:.2f}%   route entropy "
        f"{results['route_entropy']:.3f} nats   modules used {results['modules_used']}"
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
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="per-task WPL routers on DigitsMTL, with references")
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

    # The verbs of their own modules run one torch thread per run (routing_env.experiments.runs).
    torch.set_num_threads(getattr(args, "torch_threads", 1))
    if args.command == "demo":
        from routing_env.experiments.demo import main as demo_main

        demo_main(episodes=args.episodes, seed=args.seed)
    elif args.command == "train":
        run_train(args)
    else:
        args.run_verb(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
