"""The environment layer stands on its own (DESIGN 7, "Layers")."""

import subprocess
import sys


def test_routing_env_and_its_instruments_load_without_the_routers_or_the_harness():
    code = (
        "import sys, routing_env, routing_env.metrics, routing_env.routing_game_v0, "
        "routing_env.vector, routing_env.baselines; "
        "loaded = [m for m in sys.modules if m == 'agents' or m.startswith(('agents.', "
        "'routing_env.experiments'))]; print(loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
