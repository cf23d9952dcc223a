"""RLlib interoperability tests (DESIGN 3.6).

RLlib pins an older Gymnasium than the dev environment, so these tests run in RLlib's own virtual
environment: ``make test-rllib`` builds ``.venv-rllib`` and runs ``pytest -m rllib
tests/interop_rllib``. The default run deselects the ``rllib`` marker; this conftest then does not
even collect the files, so the dev environment never pays for (or trips over) importing RLlib.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def _rllib_importable() -> bool:
    try:
        import ray.rllib  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if "not rllib" in (config.getoption("markexpr") or ""):
        return True
    if collection_path.name.startswith("test_") and not _rllib_importable():
        return True
    return None


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the whole session, on 2 CPUs: the machine's 2 cores are shared, and
    every algorithm here samples in its local env runner (``num_env_runners=0``)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
