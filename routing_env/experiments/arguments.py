"""What the ``routing-env`` verbs share on their command lines: one budget word
(``--episodes``, as in :func:`agents.train`), one seeds syntax, suite names in any spelling, help
text without reST markup and with defaults, and one-line errors."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from routing_env.settings import AGGREGATE_DEFAULTS

#: What ``--seeds`` takes, said once for every verb's help.
SEEDS_HELP = "a count N (seeds 0..N-1), a range A-B or a comma list A,B,C"


class UsageError(argparse.ArgumentTypeError):
    """Bad input at the command line: printed as one line, exit code 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (reST markup removed), and each option's default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def plain(text: str | None) -> str:
    """``text`` (a docstring) without reST roles and literals: ``:func:`x``` and ````x```` read
    as ``x``."""
    text = inspect.cleandoc(text or "")
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """The seeds of ``--seeds``: a count ``N`` (``0..N-1``), a range ``A-B`` (inclusive) or a
    comma list ``A,B,C``; a ``UsageError`` names anything else."""
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str):
        return [int(seed) for seed in text]
    value = text.strip()
    try:
        if "," in value:
            seeds = [int(part) for part in value.split(",") if part.strip()]
        elif re.fullmatch(r"\d+-\d+", value):
            first, last = (int(part) for part in value.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = list(range(int(value)))
    except ValueError:
        raise UsageError(f"takes {SEEDS_HELP}; got {text!r}") from None
    if not seeds:
        raise UsageError(f"--seeds names no seed: {text!r}")
    return seeds


def add_episodes(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--episodes`` (training routes, ``what``), the budget word of every verb; the old
    spellings ``--budget`` and ``--routes`` still work and are not shown."""
    parser.add_argument("--episodes", type=int, default=default, help=what)
    for old in ("--budget", "--routes"):
        parser.add_argument(old, dest="episodes", type=int, help=argparse.SUPPRESS)


def add_bootstrap_reps(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap-reps``: resamples of the aggregate statistics' bootstrap intervals
    (``routing_env.experiments.aggregate``)."""
    parser.add_argument(
        "--bootstrap-reps",
        type=int,
        default=AGGREGATE_DEFAULTS["reps"],
        help="bootstrap resamples of the IQM, probability-of-improvement and performance-profile "
        "intervals (rliable's own default: 50000)",
    )


def device_name(text: str) -> str:
    """``--device``: a torch device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``); a
    ``UsageError`` names a malformed one or a CUDA device this machine does not have."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"takes a torch device (cpu, cuda, cuda:1), got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{text}: no CUDA device is available on this machine")
    return str(device)


def add_device(parser: argparse.ArgumentParser, what: str) -> None:
    """``--device``: where the routed network (and ``what``) computes; default the CPU
    (checked by :func:`device_name` when the command runs, so a bad one ends in one line)."""
    parser.add_argument(
        "--device",
        default=None,
        help=f"torch device of the routed network and {what} (cpu, cuda, cuda:1; default cpu)",
    )


def positive(value: int | None, option: str) -> None:
    """A ``UsageError`` unless ``value`` is unset or positive."""
    if value is not None and value < 1:
        raise UsageError(f"{option} must be positive, got {value}")


def fail(message: str) -> NoReturn:
    """Print ``routing-env: error: message`` (one line) and exit with code 2."""
    text = " ".join(str(message).split())
    print(f"routing-env: error: {text}", file=sys.stderr)
    raise SystemExit(2)
