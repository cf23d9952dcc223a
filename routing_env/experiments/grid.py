"""Run a grid of :class:`~routing_env.experiments.runs.RunSpec` in parallel: a local process
pool, or a Ray cluster.

Each run is independent and single-threaded (one torch thread), so a grid scales with the
number of worker processes. Locally, ``workers`` processes (``spawn``: no inherited torch
threads or locks); with ``workers=1`` the runs execute in this process, one after the other.
With ``ray_address`` the runs become Ray tasks of one CPU each: ``"local"`` starts a Ray
instance on this machine with ``workers`` CPUs, any other value is passed to ``ray.init``
(``"auto"``, ``"ray://head:10001"``); an already initialised Ray is used as it is. Every node
needs ``routing-env`` installed (the ``ray`` extra: ``pip install 'routing-env[ray]'``) and,
for file-based suites, the files at the spec's ``data_dir``.

Results come back in the order of the specs whatever the order the runs finish in; the
numbers of a run do not depend on where or next to what it ran.
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from routing_env.experiments.arguments import SEEDS_HELP, parse_seeds
from routing_env.experiments.runs import RunSpec, run

Progress = Callable[[int, int, dict[str, Any]], None]


def run_grid(
    specs: Sequence[RunSpec],
    workers: int = 2,
    ray_address: str | None = None,
    on_result: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run every spec; their records (:func:`routing_env.experiments.runs.run`) in the specs' order.

    Args:
        specs: the runs.
        workers: local worker processes (or, with ``ray_address="local"``, the CPUs of the
            Ray instance started here).
        ray_address: run on Ray (see the module docstring); ``None`` for the local pool.
        on_result: called as ``on_result(done, total, record)`` as each run finishes.

    Raises:
        ValueError: ``workers`` below 1.
        ImportError: ``ray_address`` given but Ray is not installed.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if ray_address is not None:
        return _run_on_ray(specs, workers, ray_address, on_result)
    records: list[dict[str, Any] | None] = [None] * len(specs)
    if workers == 1 or len(specs) <= 1:
        for number, spec in enumerate(specs):
            records[number] = run(spec)
            _report(on_result, number + 1, len(specs), records[number])
        return records  # type: ignore[return-value]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(specs)), mp_context=context) as pool:
        futures = {pool.submit(run, spec): number for number, spec in enumerate(specs)}
        for done, future in enumerate(as_completed(futures), start=1):
            records[futures[future]] = future.result()
            _report(on_result, done, len(specs), records[futures[future]])
    return records  # type: ignore[return-value]


def add_grid_arguments(
    parser: argparse.ArgumentParser, seeds: str = "3", points: bool = True
) -> None:
    """The options of a command that runs a grid: ``--seeds`` (default ``seeds``), ``--points``
    (unless the command chooses its own evaluations), ``--workers``, ``--ray-address``."""
    parser.add_argument("--seeds", type=parse_seeds, default=seeds, help=SEEDS_HELP)
    if points:
        parser.add_argument("--points", type=int, default=5, help="evaluations per run")
    parser.add_argument("--workers", type=int, default=2, help="parallel runs")
    parser.add_argument(
        "--ray-address", default=None, help="run on Ray: 'local', 'auto' or a cluster address"
    )


def _run_on_ray(
    specs: Sequence[RunSpec], workers: int, ray_address: str, on_result: Progress | None
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as error:
        raise ImportError("--ray-address needs Ray: pip install 'routing-env[ray]'") from error
    if not ray.is_initialized():
        if ray_address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=ray_address, log_to_driver=False)
    remote_run = ray.remote(num_cpus=1)(run)
    pending = {remote_run.remote(spec): number for number, spec in enumerate(specs)}
    records: list[dict[str, Any] | None] = [None] * len(specs)
    done = 0
    waiting = list(pending)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        for reference in ready:
            records[pending[reference]] = ray.get(reference)
            done += 1
            _report(on_result, done, len(specs), records[pending[reference]])
    return records  # type: ignore[return-value]


def _report(on_result: Progress | None, done: int, total: int, record: Any) -> None:
    if on_result is not None:
        on_result(done, total, record)
