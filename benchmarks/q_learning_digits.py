"""Why tabular Q-learning stays at the majority rate on DigitsMTL, and what makes it learn.

Issue 17, item 3; the finding is in ``docs/results.md``, "Tabular Q-learning on DigitsMTL".
DigitsMTL with the environment's defaults (10 one-vs-rest tasks, majority rate 90%, layered, 3
routed layers x 10 modules, reward +-1, module SGD lr 0.3, batch 16) in a
``RoutingVectorEnv(num_envs=256)``; per-task tabular Q-learning (``agents.make_agent("q",
env, **options)``) in the variants asked for. Every ``--every`` routes the run prints, through
:func:`routing_env.experiments.nonstationarity.measure_nonstationarity`:

* ``test``: greedy test accuracy on 1,000 evenly spaced test samples;
* ``flip d0/d1/d2``: share of the tasks whose greedy module at that depth changed since the
  last measurement (read from the Q table);
* ``rivals d0/d1/d2``: per task, the allowed non-greedy actions whose value is within
  ``RIVAL_MARGIN`` of the greedy one (mean over tasks): 0 while the greedy route is locked in,
  all of them (10 at depths 0-1, 9 at depth 2 on DigitsMTL) when the values no longer tell
  modules apart;
* ``spread d0/d1/d2``: per task, the largest minus the smallest value among the actions tried
  at that depth (mean over tasks);
* ``routes``: distinct greedy routes among the tasks;
* ``stab``, ``drift``: the instruments' map stability and return drift (``routing_env.metrics``).

Variants (``--variants``, comma-separated), each changing one thing from ``class``, the
class's own ``lr=0.1``, ``epsilon=0.1`` (what ``make_agent("q", env)`` built before issue 17):
``epsilon-0.01``, ``epsilon-0.03``, ``lr-0.01``, ``lr-0.5``, ``epsilon-anneal`` (0.1 to 0 over
50k routes), ``optimistic`` (Q starts at 1, the largest return), ``return`` (Monte Carlo
target), ``return-lr-0.01``, ``rho-0.3`` (collaboration reward 0.3, ``001`` section 4),
``module-lr-0.1``; ``defaults`` (``make_agent("q", env)`` now: ``lr=0.01``, ``epsilon=0.01``)
and ``defaults-peer-modules`` (the peer's module SGD lr 0.01, batch 64); ``wpl`` and
``wpl-peer-modules`` (per-task WPL with its defaults), ``fixed-per-task`` (task ``t`` takes
module ``t`` at every depth, learning nothing), ``advantage`` (tabular advantage learning, its
class's lr 0.1 and epsilon 0.1) and ``advantage-small`` (lr 0.01, epsilon 0.01), for
comparison. ``--dataset`` runs them
on another suite (``synthetic-mtl``, ``mnist1d-mtl``).

Run from the repository root (about 1-2 minutes per 100k-route run on a free core)::

    PYTHONPATH=. python benchmarks/q_learning_digits.py --variants class,defaults \
        --routes 100000 --every 10000 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from agents import make_agent, train
from agents.q_learning import QLearning
from routing_env import RoutingVectorEnv
from routing_env.experiments.nonstationarity import measure_nonstationarity

RIVAL_MARGIN = 0.05
EVAL_EPISODES = 1000
NUM_ENVS = 256

#: QLearning's own defaults, which ``make_agent("q", env)`` used before issue 17.
CLASS = {"lr": 0.1, "epsilon": 0.1}
#: The module settings of the peer's measurement (PytorchRouting: SGD 0.01, batch 64).
PEER_MODULES = {"module_lr": 0.01, "module_batch_size": 64}

#: name -> (router, router options, environment options); each Q variant changes one thing
#: from ``CLASS`` unless its name says otherwise.
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "class": ("q", CLASS, {}),
    "epsilon-0.01": ("q", {**CLASS, "epsilon": 0.01}, {}),
    "epsilon-0.03": ("q", {**CLASS, "epsilon": 0.03}, {}),
    "lr-0.01": ("q", {**CLASS, "lr": 0.01}, {}),
    "lr-0.5": ("q", {**CLASS, "lr": 0.5}, {}),
    "epsilon-anneal": ("q", {**CLASS, "epsilon_final": 0.0, "epsilon_decay_episodes": 50_000}, {}),
    "optimistic": ("q", {**CLASS, "initial_value": 1.0}, {}),
    "return": ("q", {**CLASS, "target": "return"}, {}),
    "return-lr-0.01": ("q", {**CLASS, "target": "return", "lr": 0.01}, {}),
    "rho-0.3": ("q", CLASS, {"collaboration_reward": 0.3}),
    "module-lr-0.1": ("q", CLASS, {"module_lr": 0.1}),
    "defaults": ("q", {}, {}),
    "defaults-peer-modules": ("q", {}, PEER_MODULES),
    "wpl": ("wpl", {}, {}),
    "wpl-peer-modules": ("wpl", {}, PEER_MODULES),
    "fixed-per-task": ("fixed-per-task", {}, {}),
    "advantage": ("advantage", {}, {}),
    "advantage-small": ("advantage", {"lr": 0.01, "epsilon": 0.01}, {}),
}


def table_stats(agent: QLearning, masks: np.ndarray, tried: np.ndarray) -> dict[str, Any]:
    """The greedy modules, rivals and value spread of ``agent``'s table, per depth.

    Args:
        agent: the Q-learner.
        masks: ``(max_depth, num_actions)`` allowed actions per depth.
        tried: ``(num_tasks, max_depth, num_actions)`` whether the entry has been updated.
    """
    q = np.where(masks[None], agent.q, -np.inf)
    greedy = q.argmax(axis=2)
    best = q.max(axis=2, keepdims=True)
    rivals = (q >= best - RIVAL_MARGIN).sum(axis=2) - 1
    low = np.where(tried, agent.q, np.inf).min(axis=2)
    high = np.where(tried, agent.q, -np.inf).max(axis=2)
    spread = np.where(tried.any(axis=2), high - low, 0.0)
    return {
        "greedy": greedy,
        "rivals": rivals.mean(axis=0).tolist(),
        "spread": spread.mean(axis=0).tolist(),
        "routes": len({tuple(row) for row in greedy.tolist()}),
    }


def run(
    variant: str, seed: int, routes: int, every: int, dataset: str = "digits-mtl"
) -> dict[str, Any]:
    """Train one variant and measure it every ``every`` routes; prints a line per measurement."""
    router, options, env_options = VARIANTS[variant]
    env = RoutingVectorEnv(num_envs=NUM_ENVS, dataset=dataset, **env_options)
    agent = make_agent(router, env, seed=seed, **options)
    network = env.network
    masks = np.stack([network.action_mask(d) for d in range(network.max_depth)]).astype(bool)
    tabular = isinstance(agent, QLearning)
    tried = np.zeros(agent.q.shape, dtype=bool) if tabular else None
    stats: list[dict[str, Any]] = []
    calls = 0

    def train_routes(count: int) -> dict[str, Any]:
        nonlocal calls
        before = agent.q.copy() if tabular else None
        history = train(agent, env, count, seed=seed if calls == 0 else None, progress=False)
        calls += 1
        if tabular:
            tried[...] |= agent.q != before
            stats.append(table_stats(agent, masks, tried))
        return {"train_accuracy": history["final"]["train_accuracy"]}

    print(f"\n## {dataset} {variant}, seed {seed}: {router} {options or ''} {env_options or ''}")
    table = "flip d0/d1/d2  | rivals d0/d1/d2 | spread d0/d1/d2  | routes" if tabular else ""
    print(f"  routes   test  train | {table}  stab  drift")
    start = time.perf_counter()
    history = measure_nonstationarity(
        agent, env, routes, every, eval_episodes=EVAL_EPISODES, seed=seed, train_routes=train_routes
    )
    flips = []
    for k in range(1, len(history["routes"])):
        line = (
            f"{history['routes'][k]:8d}  {history['accuracy'][k]:.3f} "
            f"{history['train_accuracy'][k]:.3f} |"
        )
        if tabular:
            now = stats[k - 1]
            previous = stats[k - 2]["greedy"] if k > 1 else None
            flip = [float("nan")] * 3 if previous is None else (now["greedy"] != previous).mean(0)
            flips.append(list(map(float, flip)))
            line += (
                " " + " ".join(f"{f:4.1f}" for f in flip) + " |"
                " " + " ".join(f"{r:4.1f}" for r in now["rivals"]) + " |"
                " " + " ".join(f"{s:5.3f}" for s in now["spread"]) + " |"
                f" {now['routes']:5d}"
            )
        line += f"  {history['map_stability'][k]:.2f} {history['return_drift'][k]:+.3f}"
        print(line, flush=True)
    seconds = time.perf_counter() - start
    print(f"  ({seconds:.0f} s)")
    return {
        "variant": variant,
        "dataset": dataset,
        "seed": seed,
        "routes": history["routes"],
        "test_accuracy": history["accuracy"],
        "train_accuracy": history["train_accuracy"],
        "map_stability": history["map_stability"],
        "return_drift": history["return_drift"],
        "flips": flips,
        "rivals": [s["rivals"] for s in stats],
        "spread": [s["spread"] for s in stats],
        "distinct_routes": [s["routes"] for s in stats],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="class,defaults", help=", ".join(VARIANTS))
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--dataset", default="digits-mtl", help="any suite; DigitsMTL by default")
    parser.add_argument("--json", default=None, help="write every record to this file")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    records = [
        run(name, int(seed), args.routes, args.every, args.dataset)
        for name in names
        for seed in args.seeds.split(",")
    ]
    print("\n## test accuracy (%) at each measurement")
    for record in records:
        accuracies = " ".join(f"{100 * a:5.1f}" for a in record["test_accuracy"][1:])
        print(f"{record['variant']:>15s} seed {record['seed']}: {accuracies}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(records, handle, indent=1, default=float)


if __name__ == "__main__":
    main()
