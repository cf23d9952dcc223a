import os

import pytest
import torch

# Tests run on 2 cores; one torch thread keeps timings stable and avoids oversubscription.
torch.set_num_threads(1)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def fashion_dir() -> str:
    if not os.path.exists(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")):
        pytest.skip(
            "Fashion-MNIST files absent: `apt-get install dataset-fashion-mnist` "
            f"(installs them in {FASHION_DIR})"
        )
    return FASHION_DIR


@pytest.fixture
def torch_row_kernel(monkeypatch) -> None:
    """Small module updates through the per-row kernel's PyTorch operations (what a GPU runs)
    instead of the compiled CPU update."""
    from routing_env.network import compiled

    monkeypatch.setattr(compiled, "supported", lambda stacks: False)


@pytest.fixture(scope="session")
def small_synthetic_npz(tmp_path_factory) -> str:
    """A small SyntheticMTL (4 tasks in 2 clusters, 60 train and 15 test samples per task)
    as an .npz: grid runs on it take about a second."""
    from routing_env.datasets import load_suite

    path = tmp_path_factory.mktemp("data") / "small_synthetic.npz"
    load_suite("synthetic-mtl", num_tasks=4, samples_per_task=60, test_samples_per_task=15).to_npz(
        path
    )
    return str(path)
