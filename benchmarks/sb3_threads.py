"""SB3's PPO and sb3-contrib's MaskablePPO on the batched routing env, at one torch thread and
at torch's default thread count (issue 16, part 6).

A new user's setup: ``agents.sb3.make_vec_env("digits-mtl")`` (16 routes in flight) and the
algorithms' default arguments, except ``n_steps=16`` so that one rollout and its training take
seconds (PPO trains ``n_epochs / batch_size`` minibatches per environment step whatever
``n_steps`` is, so steps/s match the default 2048 up to the fixed cost of a rollout). Each
setting runs in its own subprocess (the thread count is per process), the four settings
alternate round by round, and the table holds medians: environment steps/s (decisions, summed
over the 16 routes), the share of the time spent in the env's ``step`` (our code: the routing
network's forward pass and module updates) and in the PPO update (``train``).

The last table times single small torch ops with 300 us of Python work between calls, as in a
training loop: at more than one thread, ops that open an OpenMP parallel region even for a few
hundred numbers (``tanh``, ``exp``, ``softmax``, ``linear``...) wait for a worker thread to be
woken up; an op without one (``add``) does not. On a machine whose cores are busy with other
work that wait is a scheduler slice, milliseconds per op. The remedy is one thread:
``torch.set_num_threads(1)`` or ``OMP_NUM_THREADS=1``.

Run: ``python benchmarks/sb3_threads.py`` (``--rounds``, ``--seconds`` per measurement). A
one-thread measurement takes about 6 s with its start-up. The default-thread ones take as long
unless the cores are busy with other jobs: on 2 cores at load 8, one rollout and update of 256
steps took 15-25 s and the whole run 7 minutes (``--rounds 1`` halves it). Their figures depend
on the load, printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

ALGORITHMS = ("ppo", "maskable-ppo")
N_STEPS = 16


def measure(algorithm: str, threads: int | None, seconds: float) -> dict[str, float]:
    """Steps/s of ``algorithm`` learning on ``make_vec_env("digits-mtl")`` for ``seconds``.

    Args:
        algorithm: ``"ppo"`` (SB3) or ``"maskable-ppo"`` (sb3-contrib).
        threads: torch threads, or ``None`` for torch's default.
        seconds: least time spent, in whole rollouts and updates; the first one is a warm-up
            and is left out of the figures when more than one ran.

    Returns:
        ``threads`` (as used), ``steps_per_s``, ``env_share`` and ``train_share``.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    from agents.sb3 import make_vec_env

    env = make_vec_env("digits-mtl")
    cls = {"ppo": PPO, "maskable-ppo": MaskablePPO}[algorithm]
    model = cls("MultiInputPolicy", env, n_steps=N_STEPS, seed=0, device="cpu")
    spent = {"env": 0.0, "train": 0.0}
    env.step_wait = _timed(env.step_wait, spent, "env")
    model.train = _timed(model.train, spent, "train")
    chunk = N_STEPS * env.num_envs
    chunks: list[tuple[float, float, float]] = []
    start = time.perf_counter()
    while not chunks or time.perf_counter() - start < seconds:
        spent.update(env=0.0, train=0.0)
        began = time.perf_counter()
        model.learn(chunk, reset_num_timesteps=len(chunks) == 0)
        chunks.append((time.perf_counter() - began, spent["env"], spent["train"]))
    # The first rollout and update warm up, unless it is the only one (a slow setting).
    measured = chunks[1:] or chunks
    elapsed = sum(c[0] for c in measured)
    return {
        "threads": torch.get_num_threads(),
        "steps_per_s": chunk * len(measured) / elapsed,
        "env_share": sum(c[1] for c in measured) / elapsed,
        "train_share": sum(c[2] for c in measured) / elapsed,
    }


def _timed(method: Callable[..., Any], spent: dict[str, float], key: str) -> Callable[..., Any]:
    """``method`` adding its wall time to ``spent[key]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - began

    return timed


def op_stalls(threads: int, calls: int = 200, gap_us: int = 300) -> dict[str, float]:
    """Mean microseconds per call of small ops at ``threads`` torch threads, each call after
    ``gap_us`` of busy Python work (a worker thread that has gone to sleep must be woken)."""
    torch.set_num_threads(threads)
    rows, features = torch.randn(16, 64), torch.randn(16, 78)
    weight, bias = torch.randn(64, 78), torch.randn(64)
    ops = {
        "tanh 16x64": lambda: torch.tanh(rows),
        "softmax 16x64": lambda: torch.softmax(rows, 1),
        "linear 16x78->64": lambda: torch.nn.functional.linear(features, weight, bias),
        "add 16x64": lambda: rows + rows,
    }
    means = {}
    for name, op in ops.items():
        total = 0
        for _ in range(calls):
            until = time.perf_counter_ns() + gap_us * 1000
            while time.perf_counter_ns() < until:
                pass
            began = time.perf_counter_ns()
            op()
            total += time.perf_counter_ns() - began
        means[name] = total / calls / 1000
    return means


def _worker(algorithm: str, threads: int | None, seconds: float) -> dict[str, float]:
    """``measure`` in a fresh interpreter (its own thread count)."""
    command = [sys.executable, __file__, "--worker", algorithm, str(threads or 0)]
    command += ["--seconds", str(seconds)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--worker", nargs=2, metavar=("ALGORITHM", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        algorithm, threads = args.worker[0], int(args.worker[1]) or None
        print(json.dumps(measure(algorithm, threads, args.seconds)))
        return
    default_threads = torch.get_num_threads()
    settings = [(algorithm, threads) for algorithm in ALGORITHMS for threads in (1, None)]
    results: dict[tuple[str, int | None], list[dict[str, float]]] = {s: [] for s in settings}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for setting in settings if round_ % 2 == 0 else settings[::-1]:
            results[setting].append(_worker(*setting, args.seconds))
    load_after = os.getloadavg()[0]
    print(
        f"make_vec_env('digits-mtl'), 16 envs, n_steps={N_STEPS}, defaults otherwise; "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, {load_after:.1f} after; "
        f"medians of {args.rounds} rounds"
    )
    print(f"{'algorithm':<14}{'threads':>8}{'steps/s':>10}{'in env.step':>13}{'in train':>10}")
    medians: dict[tuple[str, int | None], float] = {}
    for (algorithm, threads), runs in results.items():
        medians[algorithm, threads] = statistics.median(r["steps_per_s"] for r in runs)
        env_share = statistics.median(r["env_share"] for r in runs)
        train_share = statistics.median(r["train_share"] for r in runs)
        label = "1" if threads else f"{default_threads} (default)"
        print(
            f"{algorithm:<14}{label:>8}{medians[algorithm, threads]:10.0f}"
            f"{env_share:13.0%}{train_share:10.0%}"
        )
    for algorithm in ALGORITHMS:
        ratio = medians[algorithm, 1] / medians[algorithm, None]
        print(f"{algorithm}: 1 thread / default threads = {ratio:.1f}x")
    for threads, label in ((1, "1 thread"), (None, "default threads")):
        ratio = medians["maskable-ppo", threads] / medians["ppo", threads]
        print(f"maskable-ppo / ppo at {label} = {ratio:.2f}")
    print("\nmean us per call of small ops, 300 us of Python work between calls")
    one, default = op_stalls(1), op_stalls(default_threads)
    for name in one:
        print(f"{name:<18} 1 thread {one[name]:9.1f}   default {default[name]:9.1f}")


if __name__ == "__main__":
    main()
