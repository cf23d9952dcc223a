"""Multi-task datasets for routing networks: the container, its ``.npz`` format and the suites.

``load_suite(name, data_dir=None, seed=0, **options)`` builds a named suite; ``SUITES`` lists
the names; ``MultiTaskDataset.from_npz`` reads any dataset saved in the ``.npz`` format.
"""

from routing_env.datasets.base import (
    CorruptDataError,
    DatasetNotFoundError,
    MultiTaskDataset,
    Split,
)
from routing_env.datasets.suites import SUITES, available_offline, load_suite

__all__ = [
    "SUITES",
    "CorruptDataError",
    "DatasetNotFoundError",
    "MultiTaskDataset",
    "Split",
    "available_offline",
    "load_suite",
]
