import random
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog
from sklearn.linear_model import LogisticRegression

from routing_env.datasets import (
    SUITES,
    DatasetNotFoundError,
    MultiTaskDataset,
    available_offline,
    load_suite,
)
from routing_env.datasets.suites import FASHION_DIR

SMALL = {
    "digits-mtl": {},
    "mnist1d-mtl": {"num_samples": 500},
    "synthetic-mtl": {"samples_per_task": 200, "test_samples_per_task": 50},
    "regression-two-mode": {"samples": 300, "test_samples": 60},
}
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def assert_same(a: MultiTaskDataset, b: MultiTaskDataset) -> None:
    for name in ("train", "test"):
        for field in ("x", "task", "y"):
            np.testing.assert_array_equal(
                getattr(a.split(name), field), getattr(b.split(name), field)
            )


def per_task_positive_rate(split) -> np.ndarray:
    return np.array([split.y[split.task == t].mean() for t in np.unique(split.task)])


@pytest.mark.parametrize("suite", list(SMALL))
def test_same_seed_same_arrays_other_seed_other_arrays(suite):
    first = load_suite(suite, seed=3, **SMALL[suite])
    assert_same(first, load_suite(suite, seed=3, **SMALL[suite]))
    other = load_suite(suite, seed=4, **SMALL[suite])
    assert not np.array_equal(first.test.x, other.test.x)


def test_digits_mtl():
    data = load_suite("digits-mtl")
    assert (data.name, data.num_tasks, data.num_classes) == ("digits-mtl", 10, 2)
    assert data.input_shape == (64,) and data.task_type == "classification"
    assert data.train.x.dtype == np.float32 and data.train.y.dtype == np.int64
    assert data.train.x.min() == 0.0 and data.train.x.max() == 1.0
    # Every image appears in all ten tasks; 20% of the 1797 images (stratified) are test images.
    train_images, test_images = len(data.train) // 10, len(data.test) // 10
    assert train_images + test_images == 1797 and abs(test_images - 359) <= 5
    for split, images in ((data.train, train_images), (data.test, test_images)):
        assert np.bincount(split.task).tolist() == [images] * 10
        block = split.x[split.task == 0]
        for t in range(1, 10):
            np.testing.assert_array_equal(split.x[split.task == t], block)
        # Each image is positive in exactly one task.
        positives = np.stack([split.y[split.task == t] for t in range(10)])
        assert (positives.sum(axis=0) == 1).all()
        majority = 1 - per_task_positive_rate(split)
        assert np.all((majority > 0.88) & (majority < 0.92)), majority


def test_mnist1d_mtl_leaves_global_rngs_alone():
    np.random.seed(1234)
    random.seed(99)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    data = load_suite("MNIST1D-MTL", num_samples=500)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and after[2:] == numpy_state[2:]
    np.testing.assert_array_equal(after[1], numpy_state[1])
    assert random.getstate() == python_state
    assert (data.name, data.num_tasks, data.num_classes, data.input_shape) == (
        "mnist1d-mtl",
        10,
        2,
        (40,),
    )
    assert (len(data.train), len(data.test)) == (4000, 1000)  # 80/20 split, in all 10 tasks
    assert data.train.x.dtype == np.float32
    majority = 1 - per_task_positive_rate(data.train)
    assert np.all(np.abs(majority - 0.9) < 0.03), majority


def separable(*parts: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether some w satisfies sign(x . w) == label for every (x, 0/1 label) given (an LP)."""
    x = np.concatenate([p[0] for p in parts]).astype(np.float64)
    sign = 2.0 * np.concatenate([p[1] for p in parts]) - 1
    result = linprog(
        np.zeros(x.shape[1]), A_ub=-sign[:, None] * x, b_ub=-np.ones(len(x)), bounds=(None, None)
    )
    assert result.status in (0, 2), result.message  # 0: feasible, 2: infeasible
    return result.status == 0


def task_data(data: MultiTaskDataset, t: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([data.train.x[data.train.task == t], data.test.x[data.test.task == t]])
    y = np.concatenate([data.train.y[data.train.task == t], data.test.y[data.test.task == t]])
    return x, 1 - y if flip else y


def test_synthetic_two_clusters_label_inputs_oppositely():
    data = load_suite("synthetic-mtl", **SMALL["synthetic-mtl"])
    assert (data.num_tasks, data.num_classes, data.input_shape) == (6, 2, (16,))
    np.testing.assert_array_equal(data.task_clusters, [0, 1, 0, 1, 0, 1])
    assert (len(data.train), len(data.test)) == (1200, 300)
    assert per_task_positive_rate(data.train).tolist() == [0.5] * 6
    # Tasks of one cluster follow one linear rule; the other cluster follows its negation.
    assert separable(*(task_data(data, t) for t in (0, 2, 4)))
    assert separable(*(task_data(data, t) for t in (1, 3, 5)))
    assert separable(task_data(data, 0), task_data(data, 1, flip=True))
    assert not separable(task_data(data, 0), task_data(data, 1))
    # One model for all tasks, ignoring the task id, is at chance.
    shared = LogisticRegression().fit(data.train.x, data.train.y).score(data.test.x, data.test.y)
    assert 0.4 < shared < 0.6


def test_synthetic_four_clusters_neighbours_are_orthogonal():
    data = load_suite("synthetic-mtl", num_tasks=8, num_clusters=4, **SMALL["synthetic-mtl"])
    np.testing.assert_array_equal(data.task_clusters, np.arange(8) % 4)
    assert separable(task_data(data, 0), task_data(data, 4))
    assert separable(task_data(data, 0), task_data(data, 2, flip=True))  # opposite cluster
    assert not separable(task_data(data, 0), task_data(data, 1))
    # Orthogonal neighbours: task 0's labels say nothing about task 1's on the same inputs.
    x, y0 = task_data(data, 0)
    probe = LogisticRegression().fit(x, y0)
    x1, y1 = task_data(data, 1)
    assert 0.35 < probe.score(x1, y1) < 0.65
    assert probe.score(*task_data(data, 4)) > 0.9


def test_synthetic_noise_flips_that_fraction_of_training_labels():
    options = {**SMALL["synthetic-mtl"], "num_tasks": 4}
    clean = load_suite("synthetic-mtl", **options)
    noisy = load_suite("synthetic-mtl", noise=0.1, **options)
    np.testing.assert_array_equal(noisy.train.x, clean.train.x)
    flipped = noisy.train.y != clean.train.y
    assert [int(flipped[noisy.train.task == t].sum()) for t in range(4)] == [20] * 4
    np.testing.assert_array_equal(noisy.test.y, clean.test.y)


def test_regression_two_mode():
    data = load_suite("TwoModeRegression", noise=0.1, **SMALL["regression-two-mode"])
    assert (data.name, data.task_type, data.num_tasks, data.num_outputs) == (
        "regression-two-mode",
        "regression",
        2,
        1,
    )
    np.testing.assert_array_equal(data.task_clusters, [0, 1])
    assert data.train.x.shape == (300, 1) and data.train.y.shape == (300,)
    assert data.train.y.dtype == np.float32
    assert np.abs(data.train.x).max() <= 1.0
    assert np.bincount(data.train.task).tolist() == [150, 150]
    x, t = data.train.x[:, 0], data.train.task
    residual = data.train.y - np.where(t == 0, 2 * x + 1, -x - 1)
    assert abs(residual.std() - 0.1) < 0.02 and abs(residual.mean()) < 0.03
    exact = load_suite("regression-two-mode", noise=0.0, **SMALL["regression-two-mode"])
    x, t = exact.test.x[:, 0], exact.test.task
    np.testing.assert_allclose(exact.test.y, np.where(t == 0, 2 * x + 1, -x - 1), atol=1e-6)


def check_recipe(data: MultiTaskDataset, per_class: int, test_per_class: int) -> None:
    assert (data.num_tasks, data.num_classes, data.input_shape) == (10, 2, (1, 28, 28))
    assert (len(data.train), len(data.test)) == (100 * per_class, 100 * test_per_class)
    assert data.train.x.dtype == np.float32
    assert data.train.x.min() >= 0 and data.train.x.max() <= 1
    for split, count in ((data.train, per_class), (data.test, test_per_class)):
        assert np.bincount(split.task).tolist() == [10 * count] * 10
        assert per_task_positive_rate(split).tolist() == [0.1] * 10


def test_mnist_mtl_recipe_from_idx_files(mnist_like_dir):
    data = load_suite("mnist-mtl", data_dir=mnist_like_dir, per_class=5, test_per_class=2)
    check_recipe(data, 5, 2)
    for split, count in ((data.train, 5), (data.test, 2)):
        pixels = np.rint(split.x[:, 0, 0, :2] * 255).astype(int)
        digit, image_id = pixels[:, 0], pixels[:, 1]
        for t in range(10):
            in_task = split.task == t
            # per_class images of every class, distinct images (no replacement), c vs rest.
            assert np.bincount(digit[in_task], minlength=10).tolist() == [count] * 10
            assert len(np.unique(image_id[in_task])) == 10 * count
            np.testing.assert_array_equal(split.y[in_task], digit[in_task] == t)
    assert_same(
        data, load_suite("mnist-mtl", data_dir=mnist_like_dir, per_class=5, test_per_class=2)
    )
    other = load_suite("mnist-mtl", data_dir=mnist_like_dir, seed=1, per_class=5, test_per_class=2)
    assert not np.array_equal(other.train.x, data.train.x)
    with pytest.raises(ValueError, match="per_class=13 exceeds the 12 images of class"):
        load_suite("mnist-mtl", data_dir=mnist_like_dir, per_class=13)


def test_mnist_mtl_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_suite("mnist-mtl")
    message = str(info.value)
    assert "data_dir=" in message and "IDX" in message and ".gz" in message
    assert all(name in message for name in IDX_FILES)
    with pytest.raises(DatasetNotFoundError) as info:
        load_suite("MNIST-MTL-v0", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "data_dir=" in message
    assert all(name in message for name in IDX_FILES)


def test_fashion_mtl_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_suite("fashion-mtl", data_dir=tmp_path)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "data_dir=" in message
    assert str(tmp_path) in message and all(name in message for name in IDX_FILES)


def test_fashion_mtl_on_the_debian_files(fashion_dir):
    data = load_suite("fashion-mtl", per_class=20, test_per_class=3, seed=5)
    check_recipe(data, 20, 3)
    assert data.train.x.max() == 1.0  # real images reach full intensity
    assert_same(
        data,
        load_suite("FashionMTL-v0", data_dir=fashion_dir, per_class=20, test_per_class=3, seed=5),
    )


def test_fashion_mtl_default_sizes_follow_the_paper(fashion_dir):
    data = load_suite("fashion-mtl")
    assert (len(data.train), len(data.test)) == (100_000, 2_000)
    assert np.bincount(data.train.task).tolist() == [10_000] * 10
    assert np.bincount(data.test.task).tolist() == [200] * 10


def test_unknown_suite_lists_known_names():
    with pytest.raises(ValueError, match="no-such-suite") as info:
        load_suite("no-such-suite")
    assert all(suite in str(info.value) for suite in SUITES)


def test_option_errors():
    with pytest.raises(
        TypeError, match="takes no option per_class; its options are: test_fraction"
    ):
        load_suite("digits-mtl", per_class=3)
    with pytest.raises(ValueError, match="num_clusters \\(7\\) must not exceed num_tasks \\(6\\)"):
        load_suite("synthetic-mtl", num_clusters=7)
    with pytest.raises(ValueError, match="noise must be in"):
        load_suite("synthetic-mtl", noise=1.5)
    with pytest.raises(ValueError, match="samples must be a positive integer, found 0"):
        load_suite("regression-two-mode", samples=0)


def test_available_offline_and_spellings():
    assert SUITES == (
        "digits-mtl",
        "mnist1d-mtl",
        "synthetic-mtl",
        "fashion-mtl",
        "mnist-mtl",
        "cifar-mtl",
        "regression-two-mode",
    )
    for name in ("digits-mtl", "DigitsMTL", "MNIST1D-MTL", "SyntheticMTL-v0", "TwoModeRegression"):
        assert available_offline(name)
    for name in ("mnist-mtl", "MNIST-MTL-v0", "CIFAR-MTL"):
        assert not available_offline(name)
    fashion_present = all(
        any((Path(FASHION_DIR) / f"{name}{suffix}").is_file() for suffix in ("", ".gz"))
        for name in IDX_FILES
    )
    assert available_offline("FashionMTL") == fashion_present
    assert (
        load_suite("routing_env/SyntheticMTL-v0", **SMALL["synthetic-mtl"]).name == "synthetic-mtl"
    )
    with pytest.raises(ValueError, match="unknown suite"):
        available_offline("mnist")
