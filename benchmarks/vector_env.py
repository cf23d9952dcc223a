"""Routed samples per second of the vector environment, as ratios measured in one run.

Issue 5 / DESIGN 7. Every figure is a throughput (samples or routes per second, one torch
thread) and every ratio compares figures measured in this run, close together in time:

1. DigitsMTL, layered, 3 routed layers x 10 modules, hidden 64, 256 envs: the vector env with
   random valid actions and with per-task tabular WPL (``agents.train``: ``act_batch`` /
   ``learn_batch``), against a static network of the same layer sizes trained with the same
   optimizer on batches of the same size (the floor of the work: one finished route is one
   training sample), and against the single-sample env (random actions, and WPL through
   ``agents.train``).
2. The vector env with random valid actions at 2, 5, 10, 20, 50 modules per layer and 64, 256,
   1024 envs, against the static network at the same batch size, and against 2 modules.
3. Resident memory (``VmRSS``, and the peak ``VmHWM``, from ``/proc/self/status``) before and
   after one million routed samples.
4. Per-task WPL learning at the train defaults with 256 and 4,096 envs (``--scale-envs``), on
   DigitsMTL and on FashionMTL's conv trunk (when Debian's files are installed), against the
   static network (with the same trunk) at the same SGD batch: the table for a GPU
   (``--device cuda``), where it runs by default; on the CPU only with ``--sections 4``.

5. With ``--against PATH`` (a checkout, e.g. ``/work/base``): table 4's measurement at 256 envs
   on DigitsMTL (``--seconds`` of static steps, then ``--scale-routes`` WPL routes, default
   40,960) in worker processes with ``PYTHONPATH=PATH`` and with this checkout, in turn
   (``--workers`` each), and the ratio between the two (after / before).

Every table runs on ``--device`` (default ``cpu``); table 0 is the headline.

The vector env runs with ``module_batch_size = num_envs`` (one module update per batch of
finished routes, the static network's batch); the single-sample env with its defaults
(``module_batch_size = 16``). Random valid actions are drawn depth by depth (one random integer
per sub-environment), so that the driver's own cost does not grow with the number of modules.
The machine may be shared: each figure is the best of a few short repeats (the settings
measured round by round), each ratio the median over rounds of the two figures of one round,
the load average is printed, and every ratio is also given on this process's CPU time (``cpu:``
columns), which other jobs on the machine disturb less than wall-clock time.

Run: ``python benchmarks/vector_env.py`` (about two minutes; ``--quick`` for a smoke run;
``--sections 0`` for the headline alone; ``--device cuda`` on a GPU; ``--sections 5 --against
/work/base`` for before / after alone).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import agents
from routing_env import RoutingEnv, RoutingVectorEnv
from routing_env.trunks import IdentityTrunk

DATASET = "digits-mtl"
HIDDEN = 64
DEPTH = 3


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class Rate:
    """Items per second of wall-clock time and of this process's CPU time."""

    def __init__(self, items: float, wall: float, cpu: float) -> None:
        self.wall = items / wall
        self.cpu = items / max(cpu, 1e-9)


class Figures:
    """Repeated measurements of several settings taken round by round.

    ``best(name)`` is a setting's best rate over the rounds; ``ratio(a, b)`` the median over
    rounds of ``a / b`` measured in the same round, which cancels slow changes of the
    machine's load between settings.
    """

    def __init__(self, rounds: list[dict[str, Rate]]) -> None:
        self.rounds = rounds

    def best(self, name: str, clock: str = "wall") -> float:
        return max(getattr(one[name], clock) for one in self.rounds)

    def ratio(self, a: str, b: str, clock: str = "wall") -> float:
        return float(
            np.median([getattr(one[a], clock) / getattr(one[b], clock) for one in self.rounds])
        )


def best_of(measures: dict[str, Callable[[], Rate]], repeats: int) -> Figures:
    """Run the measurements alternately, ``repeats`` rounds."""
    return Figures(
        [{name: measure() for name, measure in measures.items()} for _ in range(repeats)]
    )


def synchronize() -> None:
    """Wait for queued GPU work, so that a timing covers it (nothing to wait for on a CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(step: Callable[[], int], seconds: float) -> Rate:
    """Rate of ``step`` (which returns the items it handled) over about ``seconds``."""
    count = 0
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    while True:
        count += step()
        elapsed = time.perf_counter() - wall
        if elapsed >= seconds:
            synchronize()
            elapsed = time.perf_counter() - wall
            return Rate(count, elapsed, time.process_time() - cpu)


def run_once(action: Callable[[], None], items: int) -> Rate:
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    synchronize()
    return Rate(items, time.perf_counter() - wall, time.process_time() - cpu)


# ---------------------------------------------------------------------- static floor


class Static:
    """The layer sizes of the routed network with one module per layer (after a copy of its
    trunk, when it has one: FashionMTL's conv trunk), trained by SGD on ``device``."""

    def __init__(
        self, batch: int, seed: int = 0, dataset: str = DATASET, device: str = "cpu"
    ) -> None:
        env = RoutingEnv(dataset)
        data = env.dataset.split("train")
        torch.manual_seed(seed)
        sizes = [env.network.in_dims[0]] + [HIDDEN] * (DEPTH - 1)
        trunk = env.network.trunk
        layers: list[nn.Module] = []
        if not isinstance(trunk, IdentityTrunk):  # no extra op where the routed net has none
            layers += [copy.deepcopy(trunk), nn.Flatten()]
        for d in range(DEPTH):
            out = HIDDEN if d < DEPTH - 1 else env.network.num_outputs
            layers.append(nn.Linear(sizes[d], out))
            if d < DEPTH - 1:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.x = torch.as_tensor(data.x, device=device)
        self.y = torch.as_tensor(data.y, device=device)
        self.batch = batch
        self.rng = np.random.default_rng(seed)

    def step(self) -> int:
        index = torch.from_numpy(self.rng.integers(0, len(self.x), self.batch))
        index = index.to(self.x.device)
        x, y = self.x.index_select(0, index), self.y.index_select(0, index)
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return self.batch


# ---------------------------------------------------------------------- vector env


def make_vector(num_envs: int, num_modules: int, device: str = "cpu") -> RoutingVectorEnv:
    """The benchmarked vector env: one module update per batch of finished routes."""
    return RoutingVectorEnv(
        num_envs=num_envs,
        dataset=DATASET,
        num_modules=num_modules,
        hidden_dim=HIDDEN,
        max_depth=DEPTH,
        module_batch_size=num_envs,
        device=device,
    )


class RandomVector:
    """The vector env stepped with uniformly random valid actions."""

    def __init__(self, num_envs: int, num_modules: int, seed: int = 0, device: str = "cpu") -> None:
        self.env = make_vector(num_envs, num_modules, device)
        self.rng = np.random.default_rng(seed)
        self.obs, self.infos = self.env.reset(seed=seed)

    def step(self) -> int:
        actions = random_valid(self.rng, self.infos["action_mask"], self.obs["depth"])
        self.obs, _, terminated, _, self.infos = self.env.step(actions)
        return int(terminated.sum())


def random_valid(rng: np.random.Generator, masks: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """One action per row, uniform among the row's allowed ones.

    The routes move in step, so one mask serves every row: the cost is one random integer
    per row, not one random number per action and row, and the driver does not slow down
    with the number of modules, which the tables measure.
    """
    # Layered routing with valid actions: the sub-environments always move in step.
    assert (depth == depth[0]).all(), "the benchmark's routes must move in step"
    allowed = np.flatnonzero(masks[0])
    return allowed[rng.integers(len(allowed), size=len(depth))]


def wpl_vector(
    num_envs: int, num_modules: int, routes: int, seed: int = 0, device: str = "cpu"
) -> Rate:
    """Routes/s of ``agents.train`` with per-task tabular WPL on the vector env."""
    env = make_vector(num_envs, num_modules, device)
    agent = agents.make_agent("wpl", env, seed=seed)
    agents.train(agent, env, episodes=num_envs * 4, progress=False, seed=seed)  # warm-up

    def run() -> None:
        agents.train(agent, env, episodes=routes, progress=False, seed=None)

    return run_once(run, routes)


# ---------------------------------------------------------------------- where routers learn


def learning_vector(num_envs: int, device: str = "cpu", dataset: str = DATASET) -> RoutingVectorEnv:
    """The vector env at the settings where routers learn: the environment's defaults, those
    of ``routing-env train`` (module batch 16, module lr 0.3)."""
    return RoutingVectorEnv(num_envs=num_envs, dataset=dataset, device=device)


def to_target(
    make_env: Callable[[], object], target: float, every: int, limit: int, seed: int = 0
) -> tuple[int | None, float, float]:
    """Routes and training seconds (evaluations included) until per-task WPL's greedy test
    accuracy on the whole DigitsMTL test split first reaches ``target``, evaluating every
    ``every`` routes up to ``limit``; ``None`` routes when it never does. Returns the last
    accuracy too."""
    env = make_env()
    network = env.unwrapped.network
    test = RoutingEnv(DATASET, split="test", network=network, device=network.device)
    agent = agents.make_agent("wpl", test, seed=seed)
    routes, seconds, accuracy = 0, 0.0, 0.0
    while routes < limit:
        history = agents.train(
            agent,
            env,
            episodes=every,
            eval_env=test,
            eval_every=every,
            seed=seed if routes == 0 else None,
            progress=False,
        )
        routes += every
        seconds += history["seconds"]
        accuracy = history["test_accuracy"][-1]
        if accuracy >= target:
            return routes, seconds, accuracy
    return None, seconds, accuracy


def learning_section(args: argparse.Namespace) -> None:
    """Table 0: per-task WPL learning at the train defaults against the static network at the
    same SGD batch, and routes and seconds to the target accuracy."""
    envs, batch = 256, 16
    device = args.device
    static = Static(batch, device=device)
    learner = learning_vector(envs, device)
    agent = agents.make_agent("wpl", learner, seed=0)
    agents.train(agent, learner, episodes=envs * 4, progress=False, seed=0)  # warm-up
    chunk = 10_000 if args.quick else 60_000
    single_chunk = 500 if args.quick else 5_000
    single = RoutingEnv(DATASET, device=device)
    single_agent = agents.make_agent("wpl", single, seed=0)
    agents.train(single_agent, single, episodes=200, progress=False, seed=0)
    figures = best_of(
        {
            "static": lambda: timed(static.step, args.seconds),
            "vector": lambda: run_once(
                lambda: agents.train(agent, learner, chunk, progress=False, seed=None), chunk
            ),
            "single": lambda: run_once(
                lambda: agents.train(single_agent, single, single_chunk, progress=False),
                single_chunk,
            ),
        },
        1 if args.quick else max(2, args.repeats // 2),
    )
    print()
    print(
        f"0. where routers learn: DigitsMTL, {DEPTH} x 10 modules, per-task WPL at the train "
        f"defaults (module batch {batch}, module lr 0.3, WPL lr 0.5)"
    )
    print(f"{'setting':<52}{'samples/s':>10}{'x static':>9}{'cpu: x static':>15}")
    for label, name in (
        (f"static network, PyTorch SGD at batch {batch}", "static"),
        (f"vector env, {envs} envs, per-task WPL learning", "vector"),
        ("single-sample env, per-task WPL learning", "single"),
    ):
        print(
            f"{label:<52}{figures.best(name):10.0f}{figures.ratio(name, 'static'):9.3f}"
            f"{figures.ratio(name, 'static', 'cpu'):15.3f}"
        )
    target, every = 0.97, 10_000
    limit = 20_000 if args.quick else 200_000
    print()
    print(f"routes and seconds to {target:.0%} test accuracy (evaluated every {every:,} routes)")
    cases = (
        (f"vector env, {envs} envs, module batch {batch}", lambda: learning_vector(envs, device)),
        (
            f"vector env, {envs} envs, module batch {envs} (Table 1)",
            lambda: make_vector(envs, 10, device),
        ),
        ("single-sample env, module batch 16", lambda: RoutingEnv(DATASET, device=device)),
    )
    for label, factory in cases:
        routes, seconds, accuracy = to_target(factory, target, every, limit)
        reached = f"{routes:>9,} routes {seconds:7.1f} s" if routes else f"not in {limit:,}"
        print(f"  {label:<50}{reached}   (last accuracy {accuracy:.2%})")
    print(
        "  peer (PytorchRouting, per-task tabular WPL, measured by hand, see issue 16): "
        "1.1-1.4k samples/s, 90.00% after 256k samples"
    )


# ---------------------------------------------------------------------- single env


def single_random(routes: int, seed: int = 0, device: str = "cpu") -> Rate:
    env = RoutingEnv(DATASET, device=device)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    def run() -> None:
        obs, info = env.reset()
        for _ in range(routes):
            terminated = False
            while not terminated:
                allowed = np.flatnonzero(info["action_mask"])
                action = int(allowed[rng.integers(len(allowed))])
                obs, _, terminated, _, info = env.step(action)
            obs, info = env.reset()

    return run_once(run, routes)


def single_wpl(routes: int, seed: int = 0, device: str = "cpu") -> Rate:
    env = RoutingEnv(DATASET, device=device)
    agent = agents.make_agent("wpl", env, seed=seed)
    agents.train(agent, env, episodes=200, progress=False, seed=seed)  # warm-up

    def run() -> None:
        agents.train(agent, env, episodes=routes, progress=False, seed=None)

    return run_once(run, routes)


# ---------------------------------------------------------------------- memory


def memory_kb() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


# ---------------------------------------------------------------------- scale


def wpl_against_static(
    static: Static, env: RoutingVectorEnv, routes: int, seconds: float, repeats: int
) -> Figures:
    """Per-task WPL learning on ``env`` (``routes`` per repeat, after a warm-up) and the
    static network's SGD steps, round by round."""
    agent = agents.make_agent("wpl", env, seed=0)
    agents.train(agent, env, episodes=env.num_envs * 2, progress=False, seed=0)

    def learn() -> None:
        agents.train(agent, env, routes, progress=False, seed=None)

    return best_of(
        {
            "static": lambda: timed(static.step, seconds),
            "vector": lambda: run_once(learn, routes),
        },
        repeats,
    )


def scale_section(args: argparse.Namespace) -> None:
    """Table 4: per-task WPL learning at the train defaults with many envs and on FashionMTL's
    conv trunk, against the static network (trunk included) at the same SGD batch, both on
    ``args.device``: what DESIGN 7 expects a GPU to change."""
    from routing_env.datasets.suites import available_offline

    device, batch = args.device, 16
    datasets = args.scale_datasets or [DATASET] + (
        ["fashion-mtl"] if available_offline("fashion-mtl") else []
    )
    print()
    print(f"4. per-task WPL learning at the train defaults (module batch {batch}) on {device}")
    print(f"{'dataset':<14}{'envs':>6}{'routes/s':>10}{'static/s':>10}{'x static':>9}")
    for dataset in datasets:
        static = Static(batch, dataset=dataset, device=device)
        for envs in args.scale_envs:
            figures = wpl_against_static(
                static,
                learning_vector(envs, device, dataset),
                args.scale_routes or envs * (4 if args.quick else 20),
                args.seconds,
                1 if args.quick else max(2, args.repeats // 2),
            )
            print(
                f"{dataset:<14}{envs:6d}{figures.best('vector'):10.0f}"
                f"{figures.best('static'):10.0f}{figures.ratio('vector', 'static'):9.3f}"
            )
    if "fashion-mtl" not in datasets:
        print("  (FashionMTL not measured: not named, or Debian's files are not installed)")


# ---------------------------------------------------------------------- before / after

AGAINST_ENVS = 256


def against_worker(args: argparse.Namespace) -> None:
    """Table 5's worker: one round of table 4's measurement, its ratio printed as JSON."""
    static = Static(16, device=args.device)
    env = learning_vector(AGAINST_ENVS, args.device)
    figures = wpl_against_static(static, env, args.scale_routes, args.seconds, 1)
    ratios = {clock: figures.ratio("vector", "static", clock) for clock in ("wall", "cpu")}
    print(json.dumps(ratios))


def checkout_rounds(
    command: list[str], against: str, workers: int
) -> tuple[dict[str, str], dict[str, list[dict[str, float]]]]:
    """Run the worker ``command`` (it prints its figures as JSON on its last line) ``workers``
    times with ``PYTHONPATH`` on the checkout ``against`` ("before") and on this one
    ("after"), in turn; returns the checkouts' paths and each one's figures, round by round."""
    here = str(Path(__file__).resolve().parent.parent)
    checkouts = {"before": str(Path(against).resolve()), "after": here}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    for _ in range(workers):
        for name, path in checkouts.items():
            env = {**os.environ, "PYTHONPATH": path}
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return checkouts, results


def against_section(args: argparse.Namespace) -> None:
    """Table 5: before / after, worker processes on ``args.against`` and on this checkout."""
    command = [sys.executable, __file__, "--against-worker", "--device", args.device]
    command += ["--seconds", str(args.seconds), "--scale-routes", str(args.scale_routes)]
    checkouts, results = checkout_rounds(command, args.against, args.workers)
    print()
    print(
        f"5. before / after: per-task WPL at the train defaults, {AGAINST_ENVS} envs, x the static "
        f"network at batch 16, in {args.workers} worker processes per checkout, in turn"
    )
    print(f"{'checkout':<40}{'rounds (x static)':<36}{'median':>8}{'cpu: median':>13}")
    medians = {}
    for name, path in checkouts.items():
        rounds = " ".join(f"{result['wall']:.3f}" for result in results[name])
        medians[name] = {
            clock: float(np.median([result[clock] for result in results[name]]))
            for clock in ("wall", "cpu")
        }
        label = f"{name} ({path})"
        print(f"{label:<40}{rounds:<36}{medians[name]['wall']:8.3f}{medians[name]['cpu']:13.3f}")
    print(
        f"{'after / before':<76}{medians['after']['wall'] / medians['before']['wall']:8.3f}"
        f"{medians['after']['cpu'] / medians['before']['cpu']:13.3f}"
    )


# ---------------------------------------------------------------------- tables

SECTIONS = ("0", "1", "2", "3", "4", "5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--seconds", type=float, default=0.4, help="length of one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-samples", type=int, default=1_000_000)
    parser.add_argument(
        "--device", default="cpu", help="torch device of every measurement (cpu, cuda, cuda:1)"
    )
    parser.add_argument(
        "--scale-envs",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[256, 4096],
        help="comma-separated numbers of envs of table 4 (default 256,4096)",
    )
    parser.add_argument(
        "--scale-routes",
        type=int,
        default=None,
        help="WPL routes per round of table 4 (default 20 per env)",
    )
    parser.add_argument(
        "--scale-datasets",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=None,
        help="comma-separated suites of table 4 (default digits-mtl, and fashion-mtl when "
        "its files are installed)",
    )
    parser.add_argument(
        "--sections",
        default=None,
        help="comma-separated tables to run, of 0-5 (default 0-3 on the cpu, 0-4 elsewhere, "
        "and 5 with --against)",
    )
    parser.add_argument("--against", metavar="PATH", help="table 5: a checkout to compare with")
    parser.add_argument("--workers", type=int, default=4, help="table 5: workers per checkout")
    parser.add_argument("--against-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        device = str(torch.device(args.device))
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: no CUDA device is available here")
    sections = (
        args.sections.split(",")
        if args.sections
        else list(SECTIONS[:4] if device == "cpu" else SECTIONS[:5]) + ["5"] * bool(args.against)
    )
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if "5" in sections and not args.against:
        parser.error("--sections 5 compares with another checkout: give --against PATH")
    if args.against and not Path(args.against, "routing_env").is_dir():
        parser.error(f"--against {args.against}: not a checkout of routing-env")
    args.device = device
    torch.set_num_threads(1)
    if args.against_worker:
        against_worker(args)
        return
    seconds, repeats = args.seconds, args.repeats
    wpl_routes, single_routes = 60_000, 3_000
    if args.quick:
        seconds, repeats, wpl_routes, single_routes = 0.2, 1, 10_000, 500
        args.memory_samples = min(args.memory_samples, 100_000)
    print(
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores, device {device}, "
        f"load {load()}"
    )
    if "0" in sections:
        learning_section(args)
    if "1" in sections:
        table_1(args, seconds, repeats, wpl_routes, single_routes)
    if "2" in sections:
        table_2(args, seconds, repeats)
    if "3" in sections:
        table_3(args)
    if "4" in sections:
        scale_section(args)
    if "5" in sections:
        args.scale_routes = args.scale_routes or 40_960
        against_section(args)
    print(f"\nload at the end {load()}")


def table_1(
    args: argparse.Namespace, seconds: float, repeats: int, wpl_routes: int, single_routes: int
) -> None:
    """Table 1: module batch 256, where per-task WPL does not learn."""
    device = args.device
    envs, modules = 256, 10
    static, vector = Static(envs, device=device), RandomVector(envs, modules, device=device)
    figures = best_of(
        {
            "static": lambda: timed(static.step, seconds),
            "random": lambda: timed(vector.step, seconds),
            "wpl": lambda: wpl_vector(envs, modules, wpl_routes, device=device),
            "single random": lambda: single_random(single_routes, device=device),
            "single wpl": lambda: single_wpl(single_routes, device=device),
        },
        repeats,
    )
    print()
    print(
        f"1. DigitsMTL, layered, {DEPTH} x {modules} modules, hidden {HIDDEN}, {envs} envs, "
        f"module batch {envs}: a setting where per-task WPL does not learn (its accuracy: the "
        "'module batch 256' row of table 0)"
    )
    print(
        f"{'setting':<46}{'samples/s':>10}{'x static':>9}{'x single':>9}"
        f"{'cpu: /s':>10}{'x static':>9}{'x single':>9}"
    )
    rows = [
        ("static network, same batches (the floor)", "static", None),
        ("vector env, random valid actions", "random", "single random"),
        ("vector env, per-task WPL (agents.train)", "wpl", "single wpl"),
        ("single-sample env, random valid actions", "single random", None),
        ("single-sample env, per-task WPL (agents.train)", "single wpl", None),
    ]
    for label, name, single in rows:
        line = f"{label:<46}{figures.best(name):10.0f}{figures.ratio(name, 'static'):9.3f}"
        line += f"{figures.ratio(name, single):9.1f}" if single else " " * 9
        line += f"{figures.best(name, 'cpu'):10.0f}{figures.ratio(name, 'static', 'cpu'):9.3f}"
        line += f"{figures.ratio(name, single, 'cpu'):9.1f}" if single else ""
        print(line)


def table_2(args: argparse.Namespace, seconds: float, repeats: int) -> None:
    """Table 2: random valid actions by modules per layer and envs."""
    device = args.device
    print()
    print("2. vector env, random valid actions: routed samples/s by modules per layer and envs")
    print(
        f"{'envs':>6}{'modules':>9}{'static/s':>10}{'vector/s':>10}{'x static':>9}"
        f"{'x 2 mod.':>9}{'cpu: x static':>15}{'x 2 mod.':>9}"
    )
    for envs in (64, 256, 1024):
        static = Static(envs, device=device)
        measures: dict[str, Callable[[], Rate]] = {
            "static": lambda s=static.step: timed(s, seconds)
        }
        for modules in (2, 5, 10, 20, 50):
            vector = RandomVector(envs, modules, device=device)
            measures[str(modules)] = lambda step=vector.step: timed(step, seconds)
        figures = best_of(measures, repeats)
        for modules in (2, 5, 10, 20, 50):
            name = str(modules)
            print(
                f"{envs:6d}{modules:9d}{figures.best('static'):10.0f}{figures.best(name):10.0f}"
                f"{figures.ratio(name, 'static'):9.2f}{figures.ratio(name, '2'):9.2f}"
                f"{figures.ratio(name, 'static', 'cpu'):15.2f}"
                f"{figures.ratio(name, '2', 'cpu'):9.2f}"
            )


def table_3(args: argparse.Namespace) -> None:
    """Table 3: resident memory over many routed samples."""
    device = args.device
    print()
    envs, modules = 256, 10
    vector = RandomVector(envs, modules, device=device)
    for _ in range(200):
        vector.step()
    before = memory_kb()
    routed = 0
    while routed < args.memory_samples:
        routed += vector.step()
    after = memory_kb()
    print(f"3. memory over {routed:,} routed samples ({envs} envs, {modules} modules)")
    for key, name in (("VmRSS", "resident (VmRSS)"), ("VmHWM", "peak resident (VmHWM)")):
        growth = (after[key] - before[key]) / 1024
        print(
            f"{name:<24}{before[key] / 1024:9.1f} MB -> {after[key] / 1024:9.1f} MB"
            f"  (+{growth:.1f} MB)"
        )


if __name__ == "__main__":
    main()
