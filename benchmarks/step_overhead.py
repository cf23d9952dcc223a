"""Per-step overhead of the envs and the routers, this checkout against another, in one run.

Issue 16. Per-task tabular WPL trained by ``agents.train`` at the environment defaults
(DigitsMTL, layered, 3 x 10 modules, module batch 16, module lr 0.3), one torch thread:

* ``vector``: routes/s of the vector env (``RoutingVectorEnv(num_envs=256)``), and the same
  against a static network of the same sizes trained by PyTorch SGD at batch 16 (``Static(16)``
  of ``benchmarks/vector_env.py``, measured in the same process, close in time);
* ``outside``: milliseconds per 256 finished routes spent outside the module update: the same
  vector run with ``RoutedNetwork.add_routes`` replaced by a no-op (a measurement only: the
  modules do not train, so the routes differ from a real run's; the cost of the rest is the
  same);
* ``single``: routes/s of the single env (``RoutingEnv``).

Each checkout runs in a fresh subprocess per round (two checkouts cannot be imported into one
process), ``PYTHONPATH`` set to it, where the settings are measured ``--passes`` times each,
alternating (CPU time of the process: the machine may be shared); the checkouts alternate
round by round. Every figure is the median over rounds of the subprocesses' medians, every
``this/base`` ratio the median of the ratios of one round.

Run: ``python benchmarks/step_overhead.py --base /work/base`` (about three minutes;
``--rounds 1`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

#: The process's CPU time: the machine may be shared, and other jobs disturb it less than the
#: wall clock (one torch thread, so CPU time is the work done).
clock = time.process_time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _child(vector_routes: int, single_routes: int, passes: int) -> dict[str, float]:
    """The figures of the checkout on ``sys.path`` (run in a subprocess): each setting
    measured ``passes`` times, the settings alternating; medians, and the vector env against
    the static net as the median of the ratios of one pass."""
    import torch

    import agents
    from routing_env import RoutingEnv, RoutingVectorEnv
    from routing_env.network import RoutedNetwork

    sys.path.insert(0, HERE)
    from vector_env import Static

    torch.set_num_threads(1)

    def trained(env: object, warm_up: int) -> tuple[object, object]:
        agent = agents.make_agent("wpl", env, seed=0)
        agents.train(agent, env, episodes=warm_up, progress=False, seed=0)
        return agent, env

    def routes_per_second(learner: tuple[object, object], routes: int) -> float:
        agent, env = learner
        start = clock()
        agents.train(agent, env, episodes=routes, progress=False, seed=None)
        return routes / (clock() - start)

    static = Static(16)
    for _ in range(50):
        static.step()

    def static_rate() -> float:
        count, start = 0, clock()
        while clock() - start < 0.5:
            count += static.step()
        return count / (clock() - start)

    vector = trained(RoutingVectorEnv(num_envs=256, dataset="digits-mtl"), 2048)
    frozen = trained(RoutingVectorEnv(num_envs=256, dataset="digits-mtl"), 2048)
    single = trained(RoutingEnv("digits-mtl"), 300)

    def outside_ms() -> float:
        original = RoutedNetwork.add_routes
        RoutedNetwork.add_routes = lambda self, *args, **kwargs: 0  # type: ignore[method-assign]
        try:
            rate = routes_per_second(frozen, vector_routes // passes)
        finally:
            RoutedNetwork.add_routes = original  # type: ignore[method-assign]
        return 256 / rate * 1000

    measures: dict[str, Callable[[], float]] = {
        "static": static_rate,
        "vector": lambda: routes_per_second(vector, vector_routes // passes),
        "outside": outside_ms,
        "single": lambda: routes_per_second(single, single_routes // passes),
    }
    rounds = [{name: measure() for name, measure in measures.items()} for _ in range(passes)]
    figures = {name: float(np.median([one[name] for one in rounds])) for name in measures}
    figures["x static"] = float(np.median([one["vector"] / one["static"] for one in rounds]))
    return figures


def _run(checkout: str, vector_routes: int, single_routes: int, passes: int) -> dict[str, float]:
    environment = {**os.environ, "PYTHONPATH": checkout}
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--vector-routes",
        str(vector_routes),
        "--single-routes",
        str(single_routes),
        "--passes",
        str(passes),
    ]
    output = subprocess.run(
        command, env=environment, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=False, help="the checkout to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vector-routes", type=int, default=30_000, help="per subprocess")
    parser.add_argument("--single-routes", type=int, default=4_500, help="per subprocess")
    parser.add_argument("--passes", type=int, default=3, help="measurements per subprocess")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.vector_routes, args.single_routes, args.passes)))
        return
    checkouts = {"this": ROOT}
    if args.base:
        checkouts["base"] = os.path.abspath(args.base)
    rounds: list[dict[str, dict[str, float]]] = []
    for number in range(args.rounds):
        order = list(checkouts) if number % 2 == 0 else list(reversed(checkouts))
        rounds.append(
            {
                name: _run(checkouts[name], args.vector_routes, args.single_routes, args.passes)
                for name in order
            }
        )

    def median(name: str, key: str) -> float:
        return float(np.median([one[name][key] for one in rounds]))

    print(f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {args.rounds} rounds")
    rows = (
        ("vector", "vector env, 256 envs, WPL routes/s"),
        ("x static", "  x static net, SGD at batch 16"),
        ("outside", "  ms per 256 routes outside add_routes"),
        ("static", "static net samples/s"),
        ("single", "single env, WPL routes/s"),
    )
    header = f"{'figure':<42}" + "".join(f"{name:>10}" for name in checkouts)
    if "base" in checkouts:
        header += f"{'this/base':>11}"
    print(header)
    for key, label in rows:
        line = f"{label:<42}" + "".join(f"{median(name, key):10.3g}" for name in checkouts)
        if "base" in checkouts:
            ratio = np.median([one["this"][key] / one["base"][key] for one in rounds])
            line += f"{ratio:11.2f}"
        print(line)


if __name__ == "__main__":
    main()
