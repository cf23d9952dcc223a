"""Per-task WPL routers on DigitsMTL: train, evaluate, plot.

Ten tabular WPL agents (one table per task, keyed by depth; ``001`` Algorithm 3 with the
original weighting) route DigitsMTL samples through 3 routed layers of 10 modules. The modules
start untrained and the policies uniform, so the routers must first break a symmetry:
``001`` Table 2 shows MNIST-MTL at its 90% majority rate for five epochs. The defaults here are
the settings of ``routing-env train --agent wpl`` (see :mod:`routing_env.settings`).

Run: ``python examples/train_wpl_digits.py --episodes 200000 --out runs/wpl_digits``
"""

from __future__ import annotations

import argparse

from routing_env.experiments.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/wpl_digits")
    args = parser.parse_args()
    main(
        [
            "train",
            "--env",
            "DigitsMTL-v0",
            "--agent",
            "wpl",
            "--episodes",
            str(args.episodes),
            "--seed",
            str(args.seed),
            "--out",
            args.out,
        ]
    )
