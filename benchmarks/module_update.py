"""The cost of one module update at module batch 16, against one static SGD step (issue 16).

What: DigitsMTL's routed network at the environment's defaults (3 routed layers x 10 modules,
hidden 64, plain SGD, module lr 0.3), one ``RoutedNetwork.update`` on 16 finished routes (what
``add_routes`` runs every ``module_batch_size`` routes), against one step of the static network
of the same layer sizes trained by PyTorch SGD on batches of 16 (``Static(16)`` of
``benchmarks/vector_env.py``, autograd). The routes are drawn uniformly among the valid actions
(PASS included, as an untrained router draws them) or, with ``--skew``, from a geometric
distribution over the modules (a few modules take most rows, as a trained router's do).

How: one torch thread; the settings are measured in alternating rounds of ``--calls`` calls
each; a figure is the median over rounds of the microseconds per call, a ratio the median over
rounds of the ratio measured within the round (``cpu:`` the same on this process's CPU time,
which other jobs on a shared machine disturb less).

1. The update (the kernel ``update`` chooses by batch size: per-row at 16 routes) against the
   static step; the same through ``add_routes`` handed 256 routes at once (16 updates, as the
   vector env with 256 envs hands them over), per update; and the grouped kernel forced at 16
   routes.
2. Both kernels against the static step at other batch sizes (where ``rows.MAX_ROWS`` is set).
3. With ``--against PATH`` (a checkout, e.g. ``/work/base``): table 1's ratio of the update to
   the static step measured by this script in worker processes with ``PYTHONPATH=PATH`` and
   with this checkout, alternately, and the ratio between the two (before / after).

Run: ``python benchmarks/module_update.py`` (about a minute; ``--quick`` for a smoke run;
``--against /work/base`` adds table 3).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_env import Static, checkout_rounds  # noqa: E402

from routing_env import RoutingEnv  # noqa: E402

DATASET = "digits-mtl"


class Updates:
    """Module updates of a fresh DigitsMTL network on pre-drawn batches of ``batch`` routes."""

    def __init__(self, batch: int, skew: bool, seed: int = 0) -> None:
        env = RoutingEnv(DATASET)
        self.network = env.network
        data = env.dataset.split("train")
        rng = np.random.default_rng(seed)
        x, y, task = (torch.as_tensor(column) for column in (data.x, data.y, data.task))
        net = self.network
        masks = [np.flatnonzero(net.action_mask(depth)) for depth in range(net.max_depth)]
        self.batches = []
        for _ in range(64):
            index = torch.from_numpy(rng.integers(0, len(x), batch))
            if skew:
                draw = [np.minimum(rng.geometric(0.4, batch) - 1, len(a) - 1) for a in masks]
            else:
                draw = [rng.integers(0, len(a), batch) for a in masks]
            routes = np.stack([a[d] for a, d in zip(masks, draw, strict=True)], 1)
            self.batches.append((x[index], task[index], y[index], torch.from_numpy(routes)))
        self.calls = 0

    def step(self) -> None:
        self.network.update(*self.batches[self.calls % len(self.batches)])
        self.calls += 1

    def queue(self, updates: int) -> None:
        """``updates`` updates through ``add_routes``, their routes handed over at once (as the
        vector env hands over a batch of finished routes)."""
        parts = [self.batches[(self.calls + i) % len(self.batches)] for i in range(updates)]
        self.calls += updates
        x, task, y, routes = (torch.cat(column) for column in zip(*parts, strict=True))
        assert self.network.add_routes(x, task, y, routes) == updates


@contextlib.contextmanager
def kernel(name: str) -> Iterator[None]:
    """Force the per-row (``"rows"``) or the grouped (``"grouped"``) kernel for every batch
    size; ``"auto"`` leaves the choice to the update (and is all a checkout without the
    per-row kernel has)."""
    if name == "auto":
        yield
        return
    from routing_env.network import rows

    saved = rows.MAX_ROWS
    rows.MAX_ROWS = sys.maxsize if name == "rows" else 0
    try:
        yield
    finally:
        rows.MAX_ROWS = saved


def rounds(measures: dict[str, Callable[[], None]], calls: int, count: int) -> dict:
    """Wall and CPU seconds per call of each measure, ``count`` alternating rounds."""
    figures: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": []} for name in measures
    }
    for measure in measures.values():  # warm-up
        for _ in range(10):
            measure()
    for _ in range(count):
        for name, measure in measures.items():
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                measure()
            figures[name]["cpu"].append((time.thread_time() - cpu) / calls)
            figures[name]["wall"].append((time.perf_counter() - wall) / calls)
    return figures


def ratio(figures: dict, a: str, b: str, clock: str) -> float:
    return float(np.median(np.array(figures[a][clock]) / np.array(figures[b][clock])))


def micros(figures: dict, name: str, clock: str = "wall") -> float:
    return float(np.median(figures[name][clock])) * 1e6


def measure_update(batch: int, skew: bool, name: str, calls: int, count: int) -> dict:
    """Table 1's figures: the update with kernel ``name`` against the static step."""
    updates, static = Updates(batch, skew), Static(batch)

    def update() -> None:
        with kernel(name):
            updates.step()

    return rounds({"update": update, "static": static.step}, calls, count)


def worker(args: argparse.Namespace) -> None:
    """Table 3's worker: print the update's ratios to the static step as JSON."""
    torch.set_num_threads(1)
    figures = measure_update(16, args.skew, "auto", args.calls, args.rounds)
    print(
        json.dumps(
            {clock: ratio(figures, "update", "static", clock) for clock in ("wall", "cpu")}
        )
    )


def against(args: argparse.Namespace) -> None:
    """Table 3: before / after, worker processes on ``args.against`` and on this checkout."""
    command = [sys.executable, __file__, "--worker", "--calls", str(args.calls)]
    command += ["--rounds", str(max(3, args.rounds // 2))] + (["--skew"] if args.skew else [])
    checkouts, results = checkout_rounds(command, args.against, args.workers)
    print()
    print(
        f"3. before / after: update at module batch 16 / static step, in {args.workers} worker "
        "processes per checkout, alternately"
    )
    print(f"{'checkout':<46}{'x static':>10}{'cpu: x static':>15}")
    medians = {}
    for name, path in checkouts.items():
        medians[name] = {
            clock: float(np.median([r[clock] for r in results[name]])) for clock in ("wall", "cpu")
        }
        label = f"{name} ({path})"
        print(f"{label:<46}{medians[name]['wall']:10.3f}{medians[name]['cpu']:15.3f}")
    print(
        f"{'after / before':<46}{medians['after']['wall'] / medians['before']['wall']:10.3f}"
        f"{medians['after']['cpu'] / medians['before']['cpu']:15.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--calls", type=int, default=40, help="calls per setting and round")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--skew", action="store_true", help="skewed routes (see the docstring)")
    parser.add_argument("--against", metavar="PATH", help="a checkout to compare with")
    parser.add_argument("--workers", type=int, default=3, help="table 3: workers per checkout")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds, args.workers = 10, 3, 1
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, load {load:.2f}")
    routes = "skewed" if args.skew else "uniform"

    updates, queued, grouped = (Updates(16, args.skew) for _ in range(3))
    static = Static(16)

    def forced() -> None:
        with kernel("grouped"):
            grouped.step()

    figures = rounds(
        {
            "update": updates.step,
            "queued": lambda: queued.queue(16),
            "grouped": forced,
            "static": static.step,
        },
        args.calls,
        args.rounds,
    )
    # A call of "queued" makes 16 updates.
    for clock in ("wall", "cpu"):
        figures["queued"][clock] = [seconds / 16 for seconds in figures["queued"][clock]]
    print()
    print(
        f"1. DigitsMTL, 3 routed layers x 10 modules, hidden 64, one update on 16 {routes} "
        "routes, against one static SGD step at batch 16"
    )
    print(f"{'setting':<46}{'us/call':>9}{'x static':>10}{'cpu: us':>9}{'x static':>10}")
    for label, name in (
        ("static network, PyTorch SGD at batch 16", "static"),
        ("update (the kernel it chooses: per-row)", "update"),
        ("add_routes of 256 routes, per update", "queued"),
        ("update, grouped kernel", "grouped"),
    ):
        print(
            f"{label:<46}{micros(figures, name):9.0f}{ratio(figures, name, 'static', 'wall'):10.3f}"
            f"{micros(figures, name, 'cpu'):9.0f}{ratio(figures, name, 'static', 'cpu'):10.3f}"
        )

    print()
    print("2. per-row and grouped kernels by batch size (x the static step at that batch)")
    print(f"{'rows':>6}{'per-row':>10}{'grouped':>10}{'grouped / per-row':>19}")
    sizes = (8, 32, 64) if args.quick else (4, 8, 16, 32, 64, 128, 256)
    for batch in sizes:
        per_row, by_group, static_batch = (
            Updates(batch, args.skew),
            Updates(batch, args.skew),
            Static(batch),
        )

        def row_kernel(updates: Updates = per_row) -> None:
            with kernel("rows"):
                updates.step()

        def group_kernel(updates: Updates = by_group) -> None:
            with kernel("grouped"):
                updates.step()

        figures = rounds(
            {"rows": row_kernel, "grouped": group_kernel, "static": static_batch.step},
            max(5, args.calls // 2),
            max(3, args.rounds // 3),
        )
        print(
            f"{batch:>6}{ratio(figures, 'rows', 'static', 'wall'):10.3f}"
            f"{ratio(figures, 'grouped', 'static', 'wall'):10.3f}"
            f"{ratio(figures, 'grouped', 'rows', 'wall'):19.3f}"
        )
    if args.against:
        against(args)


if __name__ == "__main__":
    main()
