"""The ``001`` figure 4 comparison on our suites: which RL algorithm routes best?

Trains, on the same environment settings and seeds, WPL (tabular, per task), Q-learning
(tabular), Q-learning with an MLP, REINFORCE with an MLP (the four of ``001`` figure 4), plus
Monte Carlo advantage learning (tabular) and advantage actor-critic (MLP, ``000`` 7.1), with the
environment and router settings of ``routing-env train``, through
:func:`routing_env.experiments.compare.compare` (the ``routing-env compare`` command). Writes
to ``--out`` ``results.md`` (test accuracy, mean and 95% confidence interval over seeds,
selection entropy, modules used, time), ``learning_curves.png``, ``entropy_curves.png``,
``routing_maps.png`` and one log folder per run.

Run: ``python examples/compare_algorithms.py --episodes 100000 --seeds 3 --out runs/compare``
(the same as ``routing-env compare --methods wpl,q,q-approx,reinforce-approx,advantage,
actor-critic --episodes 100000 --seeds 3``).
"""

from __future__ import annotations

import argparse

from routing_env.experiments.arguments import SEEDS_HELP, parse_seeds
from routing_env.experiments.compare import compare, results_table

ALGORITHMS = ("wpl", "q", "q-approx", "reinforce-approx", "advantage", "actor-critic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="digits-mtl")
    parser.add_argument("--episodes", type=int, default=100_000, help="training routes per run")
    parser.add_argument("--seeds", type=parse_seeds, default="3", help=SEEDS_HELP)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    result = compare(
        args.suite, ALGORITHMS, args.seeds, args.episodes, args.out, workers=args.workers
    )
    print(results_table(result["summary"]))


if __name__ == "__main__":
    main()
