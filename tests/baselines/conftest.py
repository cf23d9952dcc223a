import numpy as np
import pytest

from routing_env.datasets import MultiTaskDataset, Split


@pytest.fixture(scope="session")
def small_dataset() -> MultiTaskDataset:
    """3 tasks, 2 classes, flat inputs of 6 features: a task's label is the sign of one feature."""
    generator = np.random.default_rng(0)

    def split(count: int) -> Split:
        x = generator.normal(size=(count, 6)).astype(np.float32)
        task = np.arange(count) % 3
        y = (x[np.arange(count), task] > 0).astype(np.int64)
        return Split(x, task, y)

    return MultiTaskDataset(split(60), split(30), num_tasks=3, num_classes=2, name="small")
