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
