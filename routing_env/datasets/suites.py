"""The named multi-task suites and ``load_suite``.

Constructions follow Rosenbaum et al. (ICLR 2018) section 4: MNIST-MTL is ten one-vs-rest
tasks (1k positives and 1k of each other class per task), CIFAR-MTL one task per CIFAR-100
coarse label with its 5 fine labels as classes. Every random choice draws from
``np.random.default_rng(seed)``; the same seed gives identical arrays.
"""

from __future__ import annotations

import inspect
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from routing_env.datasets.base import (
    CorruptDataError,
    DatasetNotFoundError,
    MultiTaskDataset,
    Split,
)
from routing_env.datasets.cifar import load_cifar100_python
from routing_env.datasets.idx import find_idx, read_idx

__all__ = ["FASHION_DIR", "SUITES", "available_offline", "canonical_suite", "load_suite"]

SUITES = (
    "digits-mtl",
    "mnist1d-mtl",
    "synthetic-mtl",
    "fashion-mtl",
    "mnist-mtl",
    "cifar-mtl",
    "regression-two-mode",
)
#: Where the Debian package ``dataset-fashion-mnist`` installs the Fashion-MNIST IDX files.
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: (slope, intercept) of the two modes of ``regression-two-mode``.
TWO_MODE_LINES = ((2.0, 1.0), (-1.0, -1.0))


def _positive_int(name: str, value: int) -> int:
    """``value`` as an int, or a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")
    return int(value)


def _fraction(name: str, value: float, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, or a ValueError naming the option."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], found {value!r}")
    return float(value)


def _unit_float(images: np.ndarray, scale: float) -> np.ndarray:
    """Integer pixels divided by ``scale`` into a new float32 array, in one allocation."""
    return np.divide(images, np.float32(scale), dtype=np.float32)


def _every_sample_every_task(x: np.ndarray, digits: np.ndarray, num_digits: int) -> Split:
    """One-vs-rest tasks over all samples: task ``c`` labels every sample 1 iff its digit is c.

    The same input appears with a positive label in one task and negative in the others,
    the interference MNIST-MTL is built to have.
    """
    count = len(digits)
    task = np.repeat(np.arange(num_digits, dtype=np.int64), count)
    labels = (np.tile(digits, num_digits) == task).astype(np.int64)
    return Split(x=np.tile(x, (num_digits,) + (1,) * (x.ndim - 1)), task=task, y=labels)


def _balanced_one_vs_rest(
    images: np.ndarray,
    digits: np.ndarray,
    per_class: int,
    rng: np.random.Generator,
    option: str,
) -> Split:
    """The MNIST-MTL recipe: task ``c`` gets ``per_class`` images of every class (drawn without
    replacement, independently per task), labelled 1 for class ``c`` and 0 otherwise.

    Returns ``classes**2 * per_class`` samples of shape ``(N, 1, H, W)``, grouped by task.
    """
    num_digits = int(digits.max()) + 1
    members = [np.flatnonzero(digits == c) for c in range(num_digits)]
    smallest = min(range(num_digits), key=lambda c: len(members[c]))
    if len(members[smallest]) < per_class:
        raise ValueError(
            f"{option}={per_class} exceeds the {len(members[smallest])} images of class "
            f"{smallest} available"
        )
    chosen = [
        rng.choice(members[c], per_class, replace=False)
        for _ in range(num_digits)
        for c in range(num_digits)
    ]
    index = np.concatenate(chosen)
    task = np.repeat(np.arange(num_digits, dtype=np.int64), num_digits * per_class)
    labels = (digits[index] == task).astype(np.int64)
    x = _unit_float(images[index], 255.0)[:, None]
    return Split(x=x, task=task, y=labels)


def _stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` with ``test_fraction`` of every class in the test part."""
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: int(round(test_fraction * len(members)))])
    test_index = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_index), test_index


def _digits(seed: int, test_fraction: float = 0.2) -> MultiTaskDataset:
    """scikit-learn's bundled 8x8 digits as ten one-vs-rest tasks (no download).

    A stratified ``test_fraction`` of the 1797 images is held out; every image appears in all
    ten tasks, positive in one. About 10% of each task's labels are positive (majority rate
    ~0.9). ``x``: float32 ``(N, 64)`` in ``[0, 1]``.
    """
    # Imported here: scikit-learn takes a while to import and only this suite needs it.
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), found {test_fraction!r}")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    target = digits.target.astype(np.int64)
    train, test = _stratified_split(target, test_fraction, np.random.default_rng(seed))
    return MultiTaskDataset(
        train=_every_sample_every_task(x[train], target[train], 10),
        test=_every_sample_every_task(x[test], target[test], 10),
        num_tasks=10,
        num_classes=2,
        name="digits-mtl",
        description="scikit-learn digits (8x8), 10 one-vs-rest tasks over all images",
    )


def _mnist1d(seed: int, num_samples: int | None = None) -> MultiTaskDataset:
    """MNIST-1D generated locally as ten one-vs-rest tasks (never downloaded).

    ``num_samples`` (default: the mnist1d package's, 5000) signals are generated with
    ``seed`` as MNIST-1D's generator seed (the published dataset used 42) and split 80/20 by
    the package; every signal appears in all ten tasks. ``x``: float32 ``(N, 40)``.
    """
    # Imported here: mnist1d pulls in matplotlib and scipy, slow to import for other suites.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = _positive_int("num_samples", num_samples)
    if args.num_samples < 10:
        raise ValueError(f"num_samples must be at least 10 (one per digit), found {num_samples}")
    args.seed = seed
    # make_dataset reseeds numpy's and Python's global generators; callers must not notice.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x_train, x_test = (np.asarray(data[k], dtype=np.float32) for k in ("x", "x_test"))
    y_train, y_test = (np.asarray(data[k], dtype=np.int64) for k in ("y", "y_test"))
    return MultiTaskDataset(
        train=_every_sample_every_task(x_train, y_train, 10),
        test=_every_sample_every_task(x_test, y_test, 10),
        num_tasks=10,
        num_classes=2,
        name="mnist1d-mtl",
        description=f"MNIST-1D ({args.num_samples} signals, seed {seed}), 10 one-vs-rest tasks",
    )


def _synthetic_split(
    rng: np.random.Generator,
    directions: np.ndarray,
    clusters: np.ndarray,
    samples: int,
    noise: float,
) -> Split:
    """``samples`` fresh inputs per task, labelled by their side of the cluster's direction."""
    xs, labels = [], []
    for cluster in clusters:
        x = rng.standard_normal((samples, directions.shape[1]))
        side = np.where(x @ directions[cluster] >= 0, 1.0, -1.0)
        label = rng.permutation(np.arange(samples) % 2)
        # Reflecting x through the origin keeps it N(0, I) and fixes its side, so each task's
        # labels are exactly balanced without rejection sampling.
        x *= (side * (2 * label - 1))[:, None]
        # A full permutation draws the same numbers whatever the noise, so changing only the
        # noise leaves the inputs of every task unchanged.
        flips = rng.permutation(samples)[: int(round(noise * samples))]
        label[flips] = 1 - label[flips]
        xs.append(x)
        labels.append(label)
    task = np.repeat(np.arange(len(clusters), dtype=np.int64), samples)
    return Split(
        x=np.concatenate(xs).astype(np.float32),
        task=task,
        y=np.concatenate(labels).astype(np.int64),
    )


def _synthetic(
    seed: int,
    num_tasks: int = 6,
    num_clusters: int = 2,
    input_dim: int = 16,
    samples_per_task: int = 1000,
    test_samples_per_task: int = 200,
    noise: float = 0.0,
) -> MultiTaskDataset:
    """Binary tasks in known clusters over the same input distribution.

    Inputs are ``x ~ N(0, I)`` in ``R^input_dim``, drawn afresh for every task. Task ``t``
    belongs to cluster ``k = t % num_clusters``, which labels ``x`` by the sign of
    ``x . w_k`` with ``w_k = cos(2 pi k / K) e1 + sin(2 pi k / K) e2`` after a fixed random
    rotation (drawn from ``seed``). Tasks of one cluster share one labelling rule; with
    ``K = 2`` the two clusters label every input in opposite ways (maximal conflict), with
    ``K = 4`` neighbouring clusters are orthogonal. Labels are exactly balanced per task;
    ``noise`` flips that fraction of each task's *training* labels (test labels stay clean).

    The optimal partition groups tasks by cluster (``task_clusters``): one module per
    cluster pools the data of its tasks and can reach 100% (minus label noise). A single
    model shared by all tasks that ignores the task id scores about 50% for ``K = 2``.
    """
    num_tasks = _positive_int("num_tasks", num_tasks)
    num_clusters = _positive_int("num_clusters", num_clusters)
    if num_clusters > num_tasks:
        raise ValueError(
            f"num_clusters ({num_clusters}) must not exceed num_tasks ({num_tasks}): every "
            f"cluster needs a task"
        )
    input_dim = _positive_int("input_dim", input_dim)
    if input_dim < 2:
        raise ValueError("input_dim must be at least 2 (the clusters span a plane), found 1")
    samples = _positive_int("samples_per_task", samples_per_task)
    test_samples = _positive_int("test_samples_per_task", test_samples_per_task)
    noise = _fraction("noise", noise, 0.0, 1.0)

    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((input_dim, input_dim)))
    rotation = q * np.sign(np.diag(r))  # sign fix makes the rotation uniformly distributed
    angles = 2 * np.pi * np.arange(num_clusters) / num_clusters
    directions = np.cos(angles)[:, None] * rotation[:, 0] + np.sin(angles)[:, None] * rotation[:, 1]
    clusters = np.arange(num_tasks, dtype=np.int64) % num_clusters
    return MultiTaskDataset(
        train=_synthetic_split(rng, directions, clusters, samples, noise),
        test=_synthetic_split(rng, directions, clusters, test_samples, 0.0),
        num_tasks=num_tasks,
        num_classes=2,
        name="synthetic-mtl",
        task_clusters=clusters,
        description=(
            f"{num_tasks} linear tasks in {num_clusters} clusters (task t in cluster "
            f"t % {num_clusters}), x ~ N(0, I_{input_dim}), label noise {noise}"
        ),
    )


def _idx_files(data_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """The four MNIST-format files found in ``data_dir``, and the standard names not found."""
    found, missing = {}, []
    for key, stem in IDX_NAMES.items():
        try:
            found[key] = find_idx(data_dir, stem)
        except DatasetNotFoundError:
            missing.append(stem)
    return found, missing


def _read_idx_set(files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` and int64 labels ``(N,)`` of one split, checked to agree."""
    images = read_idx(files[f"{split}_images"])
    labels = read_idx(files[f"{split}_labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise CorruptDataError(
            f"{files[f'{split}_images']} must hold uint8 images of shape (N, H, W), found "
            f"{images.dtype} {images.shape}"
        )
    if labels.shape != (images.shape[0],):
        raise CorruptDataError(
            f"{files[f'{split}_labels']} holds labels of shape {labels.shape} but "
            f"{files[f'{split}_images']} holds {images.shape[0]} images"
        )
    return images, labels.astype(np.int64)


def _mnist_recipe(
    files: dict[str, Path], name: str, seed: int, per_class: int, test_per_class: int
) -> MultiTaskDataset:
    """Ten one-vs-rest tasks from MNIST-format files, with the MNIST-MTL sampling recipe."""
    per_class = _positive_int("per_class", per_class)
    test_per_class = _positive_int("test_per_class", test_per_class)
    rng = np.random.default_rng(seed)
    train_images, train_labels = _read_idx_set(files, "train")
    test_images, test_labels = _read_idx_set(files, "test")
    num_digits = int(train_labels.max()) + 1
    return MultiTaskDataset(
        train=_balanced_one_vs_rest(train_images, train_labels, per_class, rng, "per_class"),
        test=_balanced_one_vs_rest(test_images, test_labels, test_per_class, rng, "test_per_class"),
        num_tasks=num_digits,
        num_classes=2,
        name=name,
        description=(
            f"{name}: {num_digits} one-vs-rest tasks, {per_class} train and {test_per_class} "
            f"test images of every class per task"
        ),
    )


def _file_list() -> str:
    """The four standard IDX file names, for error messages."""
    names = list(IDX_NAMES.values())
    return ", ".join(names[:-1]) + " and " + names[-1]


def _fashion(
    data_dir: str | os.PathLike | None, seed: int, per_class: int = 1000, test_per_class: int = 20
) -> MultiTaskDataset:
    """Fashion-MNIST as ten one-vs-rest tasks with the MNIST-MTL recipe.

    Per task ``c``: ``per_class`` train images of every class (positives of class ``c``, 10k
    per task by default) and ``test_per_class`` test images of every class (200 per task).
    Reads the IDX files (plain or gzipped) from ``data_dir``, by default where
    ``apt-get install dataset-fashion-mnist`` puts them. ``x``: float32 ``(N, 1, 28, 28)`` in
    ``[0, 1]``.
    """
    folder = Path(FASHION_DIR if data_dir is None else data_dir)
    files, missing = _idx_files(folder)
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST IDX files not found in {folder} (missing {', '.join(missing)}, "
            f"plain or .gz): install them with `apt-get install dataset-fashion-mnist` (into "
            f"{FASHION_DIR}) or pass data_dir= a folder holding {_file_list()}"
        )
    return _mnist_recipe(files, "fashion-mtl", seed, per_class, test_per_class)


def _mnist(
    data_dir: str | os.PathLike | None, seed: int, per_class: int = 1000, test_per_class: int = 20
) -> MultiTaskDataset:
    """MNIST-MTL (Rosenbaum et al. 2018): ten one-vs-rest tasks from MNIST's IDX files.

    Per task ``c``: ``per_class`` train images of every class (1k positives of ``c`` and 1k
    of each other class, 10k per task) and ``test_per_class`` test images of every class (200
    per task). ``data_dir`` is required. ``x``: float32 ``(N, 1, 28, 28)`` in ``[0, 1]``.
    """
    hint = (
        f"put MNIST's IDX files {_file_list()} (plain or .gz) in a folder and pass it as data_dir="
    )
    if data_dir is None:
        raise DatasetNotFoundError(f"mnist-mtl has no default data_dir: {hint}")
    files, missing = _idx_files(Path(data_dir))
    if missing:
        raise DatasetNotFoundError(
            f"MNIST IDX files not found in data_dir={os.fspath(data_dir)!r} (missing "
            f"{', '.join(missing)}): {hint}"
        )
    return _mnist_recipe(files, "mnist-mtl", seed, per_class, test_per_class)


def _cifar_split(
    images: np.ndarray, fine: np.ndarray, coarse: np.ndarray, rank: np.ndarray
) -> Split:
    """Samples grouped by coarse label (the task), labelled by their fine label's rank."""
    order = np.argsort(coarse, kind="stable")
    return Split(x=_unit_float(images[order], 255.0), task=coarse[order], y=rank[fine[order]])


def _cifar(data_dir: str | os.PathLike | None) -> MultiTaskDataset:
    """CIFAR-MTL (Rosenbaum et al. 2018): one task per CIFAR-100 coarse label.

    Task ``c``'s classes are its fine labels (5 in CIFAR-100), numbered 0..4 in increasing
    fine-label order; every train (2500 per task) and test (500 per task) image is used, so
    no randomness is involved. Reads the python-version pickles from ``data_dir`` without
    executing code. ``x``: float32 ``(N, 3, 32, 32)`` in ``[0, 1]``.
    """
    train, test = load_cifar100_python(data_dir)
    fine = np.concatenate([train.fine_labels, test.fine_labels])
    coarse = np.concatenate([train.coarse_labels, test.coarse_labels])
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    fine_ids, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        bad = int(fine_ids[counts > 1][0])
        raise CorruptDataError(
            f"CIFAR-100 files in {data_dir}: fine label {bad} appears under several coarse "
            f"labels {sorted(pairs[pairs[:, 0] == bad, 1].tolist())}"
        )
    num_tasks = int(coarse.max()) + 1
    per_task = np.bincount(pairs[:, 1], minlength=num_tasks)
    if len(set(per_task.tolist())) != 1:
        raise CorruptDataError(
            f"CIFAR-100 files in {data_dir}: every coarse label needs the same number of fine "
            f"labels, found {dict(enumerate(per_task.tolist()))}"
        )
    # pairs is sorted by fine label, so ranking within each coarse label follows fine order.
    rank = np.zeros(int(fine.max()) + 1, dtype=np.int64)
    for c in range(num_tasks):
        members = pairs[pairs[:, 1] == c, 0]
        rank[members] = np.arange(len(members))
    return MultiTaskDataset(
        train=_cifar_split(train.images, train.fine_labels, train.coarse_labels, rank),
        test=_cifar_split(test.images, test.fine_labels, test.coarse_labels, rank),
        num_tasks=num_tasks,
        num_classes=int(per_task[0]),
        name="cifar-mtl",
        description=(
            f"CIFAR-100: {num_tasks} tasks (coarse labels) of {int(per_task[0])} classes (their "
            f"fine labels in increasing order)"
        ),
    )


def _two_mode_split(rng: np.random.Generator, samples: int, noise: float) -> Split:
    """``samples`` points, half on each line of ``TWO_MODE_LINES``, plus Gaussian noise."""
    x = rng.uniform(-1.0, 1.0, size=(samples, 1))
    mode = rng.permutation(np.arange(samples, dtype=np.int64) % 2)
    slope, intercept = (np.array(v) for v in zip(*TWO_MODE_LINES, strict=True))
    y = slope[mode] * x[:, 0] + intercept[mode] + noise * rng.standard_normal(samples)
    return Split(x=x.astype(np.float32), task=mode, y=y.astype(np.float32))


def _two_mode(
    seed: int, samples: int = 2000, test_samples: int = 400, noise: float = 0.1
) -> MultiTaskDataset:
    """The 1-D two-mode noisy linear regression of Cases (2020) section 4.3 (Figure 4.3).

    ``x ~ U(-1, 1)``, shape ``(N, 1)``; half the samples follow ``y = 2x + 1``, half
    ``y = -x - 1``, plus Gaussian noise of std ``noise``. The mode is the task id, so the
    ideal routing sends each mode to its own module; a single module fits neither line.
    ``y``: float32 ``(N,)`` (regression, ``num_classes = 1`` output).
    """
    samples = _positive_int("samples", samples)
    test_samples = _positive_int("test_samples", test_samples)
    if noise < 0:
        raise ValueError(f"noise must be non-negative, found {noise!r}")
    rng = np.random.default_rng(seed)
    return MultiTaskDataset(
        train=_two_mode_split(rng, samples, noise),
        test=_two_mode_split(rng, test_samples, noise),
        num_tasks=2,
        num_classes=1,
        name="regression-two-mode",
        task_clusters=np.array([0, 1]),
        description=f"two noisy lines y = 2x + 1 and y = -x - 1 (noise std {noise})",
    )


_BUILDERS: dict[str, Callable[..., MultiTaskDataset]] = {
    "digits-mtl": _digits,
    "mnist1d-mtl": _mnist1d,
    "synthetic-mtl": _synthetic,
    "fashion-mtl": _fashion,
    "mnist-mtl": _mnist,
    "cifar-mtl": _cifar,
    "regression-two-mode": _two_mode,
}
_GENERATED = ("digits-mtl", "mnist1d-mtl", "synthetic-mtl", "regression-two-mode")


def _key(name: str) -> str:
    """Spelling-insensitive key: case, ``-``/``_``, a ``routing_env/`` prefix and ``-vN``."""
    text = re.sub(r"-v\d+$", "", name.strip().lower().removeprefix("routing_env/"))
    return re.sub(r"[-_\s]", "", text)


# Gymnasium ids spell the suites differently; only TwoModeRegression differs beyond case/dashes.
_ALIASES = {_key(suite): suite for suite in SUITES} | {"twomoderegression": "regression-two-mode"}


def canonical_suite(name: str) -> str:
    """The suite name ``name`` refers to (``"digits-mtl"`` for ``"DigitsMTL-v0"``,
    ``"routing_env/DigitsMTL-v0"`` or ``"digits_mtl"``), or a ValueError listing the known
    ones."""
    suite = _ALIASES.get(_key(name)) if isinstance(name, str) else None
    if suite is None:
        raise ValueError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}")
    return suite


def load_suite(
    name: str, data_dir: str | os.PathLike | None = None, seed: int = 0, **options: object
) -> MultiTaskDataset:
    """Build the named multi-task suite.

    Suites (names are case-insensitive; the Gymnasium spellings such as ``"DigitsMTL"`` or
    ``"MNIST1D-MTL-v0"`` work too):

    * ``"digits-mtl"``: scikit-learn's 8x8 digits, 10 one-vs-rest tasks.
      Options: ``test_fraction=0.2``.
    * ``"mnist1d-mtl"``: MNIST-1D generated locally, 10 one-vs-rest tasks.
      Options: ``num_samples`` (default 5000).
    * ``"synthetic-mtl"``: tasks in known clusters (``task_clusters``). Options:
      ``num_tasks=6, num_clusters=2, input_dim=16, samples_per_task=1000,
      test_samples_per_task=200, noise=0.0``.
    * ``"fashion-mtl"``: Fashion-MNIST IDX files (default ``/usr/share/datasets/fashion-mnist``).
      Options: ``per_class=1000, test_per_class=20``.
    * ``"mnist-mtl"``: MNIST IDX files at ``data_dir`` (required). Same options.
    * ``"cifar-mtl"``: CIFAR-100 python files at ``data_dir`` (required); 20 tasks of 5 classes.
    * ``"regression-two-mode"``: two noisy lines, 2 tasks. Options: ``samples=2000,
      test_samples=400, noise=0.1``.

    Args:
        name: the suite.
        data_dir: folder holding the suite's files (file-based suites; the others ignore it).
        seed: seeds every random choice (``cifar-mtl`` makes none).
        **options: the suite's options listed above.

    Raises:
        ValueError: unknown suite (listing the known names) or a bad option value.
        TypeError: an option the suite does not take.
        DatasetNotFoundError: the suite's files are missing; the message says where to get
            them and to pass ``data_dir=``.
        CorruptDataError: the files exist but are malformed or unsafe.
    """
    suite = canonical_suite(name)
    builder = _BUILDERS[suite]
    parameters = inspect.signature(builder).parameters
    accepted = [p for p in parameters if p not in ("data_dir", "seed")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"suite {suite!r} takes no option {', '.join(unknown)}; its options are: "
            f"{', '.join(accepted) or 'none'}"
        )
    fixed = {"data_dir": data_dir, "seed": seed}
    return builder(**{k: v for k, v in fixed.items() if k in parameters}, **options)


def available_offline(name: str) -> bool:
    """Whether ``load_suite(name)`` works without files supplied by the user.

    True for the generated suites (digits, MNIST-1D, synthetic, two-mode regression) and for
    Fashion-MNIST when its Debian package's files are installed; False otherwise.

    Raises:
        ValueError: unknown suite.
    """
    suite = canonical_suite(name)
    if suite == "fashion-mtl":
        return not _idx_files(Path(FASHION_DIR))[1]
    return suite in _GENERATED
