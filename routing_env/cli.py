"""The ``routing-env`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``routing-env`` console script."""
    parser = argparse.ArgumentParser(prog="routing-env", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train modules under fixed, shared and random routes on DigitsMTL"
    )
    demo.add_argument("--episodes", type=int, default=30_000, help="training routes per routing")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from routing_env.demo import main as demo_main

        demo_main(episodes=args.episodes, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
