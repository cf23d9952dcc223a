"""routing-env: routing networks as reinforcement-learning environments.

Importing the package registers the Gymnasium ids ``routing_env/Routing-v0`` (any dataset:
``gym.make("routing_env/Routing-v0", dataset=...)``) and one id per suite. Each id also has a
vector entry point: ``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``
returns a batched :class:`~routing_env.vector.RoutingVectorEnv`.
"""

from __future__ import annotations

import gymnasium as gym

from routing_env.datasets import MultiTaskDataset, load_suite
from routing_env.datasets.suites import canonical_suite
from routing_env.env import RoutingEnv
from routing_env.network import RoutedNetwork
from routing_env.vector import RoutingVectorEnv

__all__ = [
    "MultiTaskDataset",
    "RoutedNetwork",
    "RoutingEnv",
    "RoutingVectorEnv",
    "SUITE_IDS",
    "load_suite",
    "suite_id",
]
__version__ = "0.1.0"

#: Gymnasium id (without the ``routing_env/`` namespace) -> suite name.
SUITE_IDS = {
    "DigitsMTL-v0": "digits-mtl",
    "MNIST1D-MTL-v0": "mnist1d-mtl",
    "SyntheticMTL-v0": "synthetic-mtl",
    "FashionMTL-v0": "fashion-mtl",
    "MNIST-MTL-v0": "mnist-mtl",
    "CIFAR-MTL-v0": "cifar-mtl",
    "TwoModeRegression-v0": "regression-two-mode",
}


def suite_id(name: str) -> str:
    """The Gymnasium id of a suite given by any of its spellings: ``"digits-mtl"``,
    ``"DigitsMTL-v0"`` or ``"routing_env/DigitsMTL-v0"`` (a ValueError names the known ones)."""
    suite = canonical_suite(name)
    for env_id, known in SUITE_IDS.items():
        if known == suite:
            return f"routing_env/{env_id}"
    raise ValueError(f"suite {name!r} has no Gymnasium id")


def _register() -> None:
    entry_point = "routing_env.env:RoutingEnv"
    # gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point") builds the batched
    # RoutingVectorEnv (routing_env.vector) with the same keywords.
    vector_entry_point = "routing_env.vector:RoutingVectorEnv"
    if "routing_env/Routing-v0" not in gym.registry:
        gym.register(
            "routing_env/Routing-v0",
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
        )
    for env_id, suite in SUITE_IDS.items():
        full_id = f"routing_env/{env_id}"
        if full_id not in gym.registry:
            gym.register(
                full_id,
                entry_point=entry_point,
                vector_entry_point=vector_entry_point,
                kwargs={"dataset": suite},
            )


_register()
