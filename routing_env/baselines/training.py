"""Training and evaluating the baselines with the routers' data pipeline.

A router trained by ``agents.train`` on ``RoutingEnv(split="train")`` sees the training split
in the order ``RoutingEnv`` draws for the seed (a fresh permutation of the split per pass, from
the environment's ``np_random`` seeded by the first ``reset(seed=...)``), and its modules take
one SGD step on the mean loss of every ``module_batch_size`` consecutive routes. A baseline
here takes one step per ``batch_size`` consecutive samples of that same order
(:func:`training_order`), with the same loss (cross-entropy of the class logits) and the same
meaning of accuracy (the arg-max logit equals the label). ``samples`` counts training samples,
the unit of a router's routes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from torch.nn import functional as F
from tqdm.auto import tqdm

from routing_env.baselines.base import BaselineModel, model_shapes
from routing_env.baselines.registry import make_baseline
from routing_env.datasets import MultiTaskDataset
from routing_env.env import resolve_dataset
from routing_env.schedules import annealed_lr

OptimizerFactory = Callable[[list[torch.nn.Parameter], float], torch.optim.Optimizer]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}

#: A module counts as used when its gate weight, averaged over the evaluated samples, reaches
#: this share of its layer (1%): with 10 modules, a tenth of a uniform share.
USED_WEIGHT = 0.01

_EVAL_BATCH = 1024  # samples per evaluation forward pass; bounds memory, not results


def training_order(num_samples: int, count: int, seed: int) -> np.ndarray:
    """The first ``count`` training-sample indices ``RoutingEnv`` (``sample_order="shuffle"``)
    visits after ``reset(seed=seed)``: permutations of the split drawn one pass at a time from
    the generator Gymnasium seeds for the environment."""
    generator, _ = seeding.np_random(seed)
    passes = [generator.permutation(num_samples) for _ in range(math.ceil(count / num_samples))]
    return np.concatenate(passes)[:count] if passes else np.zeros(0, dtype=np.int64)


def evaluate_baseline(
    model: BaselineModel, dataset: MultiTaskDataset | str | os.PathLike, split: str = "test"
) -> dict[str, Any]:
    """Accuracy and gate statistics of ``model`` on a whole split, in evaluation mode.

    Args:
        model: a baseline.
        dataset: a ``MultiTaskDataset``, suite name or ``.npz`` path.
        split: ``"test"`` or ``"train"``.

    Returns:
        ``accuracy``, ``per_task_accuracy`` (list, ``nan`` for tasks without samples),
        ``mean_loss``, ``route_entropy`` and ``modules_used``. For gated models,
        ``route_entropy`` is the mean over layers of the entropy, in nats, of the layer's gate
        weights averaged over the samples (the routers' measure, ``agents.evaluate``, is the
        entropy of the chosen modules' frequencies per depth), and ``modules_used`` counts the
        (layer, module) pairs whose averaged weight is at least :data:`USED_WEIGHT`. Models
        without a gate (task-specific, cross-stitch) select no modules: both are ``None``.
    """
    data = resolve_dataset(dataset).split(split)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits_parts, gate_sums = [], None
    try:
        with torch.no_grad():
            for start in range(0, len(data), _EVAL_BATCH):
                x = torch.as_tensor(data.x[start : start + _EVAL_BATCH], device=device)
                task = torch.as_tensor(data.task[start : start + _EVAL_BATCH], device=device)
                output = model.run(x, task)
                logits_parts.append(output.logits.cpu())
                if output.gates is not None:
                    sums = torch.stack([gate.sum(dim=0) for gate in output.gates]).cpu()
                    gate_sums = sums if gate_sums is None else gate_sums + sums
    finally:
        model.train(was_training)
    logits = torch.cat(logits_parts)
    labels = torch.as_tensor(data.y)
    correct = (logits.argmax(dim=1) == labels).numpy()
    tasks = data.task
    per_task = [
        float(correct[tasks == t].mean()) if np.any(tasks == t) else float("nan")
        for t in range(model.num_tasks)
    ]
    result: dict[str, Any] = {
        "accuracy": float(correct.mean()),
        "per_task_accuracy": per_task,
        "mean_loss": float(F.cross_entropy(logits, labels)),
        "route_entropy": None,
        "modules_used": None,
    }
    if gate_sums is not None:
        mean_gates = (gate_sums / len(data)).double()
        layer_entropy = -(mean_gates * torch.log(mean_gates.clamp_min(1e-300))).sum(dim=1)
        result["route_entropy"] = float(layer_entropy.mean())
        result["modules_used"] = int((mean_gates >= USED_WEIGHT).sum())
    return result


def _make_optimizer(
    spec: str | OptimizerFactory, parameters: list[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    if callable(spec):
        return spec(parameters, lr)
    if spec not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {spec!r}; expected one of {sorted(OPTIMIZERS)} "
            "or a callable (parameters, lr) -> torch.optim.Optimizer"
        )
    return OPTIMIZERS[spec](parameters, lr=lr)


def train_baseline(
    name_or_model: str | BaselineModel,
    dataset: MultiTaskDataset | str | os.PathLike,
    samples: int,
    *,
    seed: int = 0,
    lr: float = 0.3,
    batch_size: int = 16,
    optimizer: str | OptimizerFactory = "sgd",
    hidden_dim: int = 64,
    num_modules: int = 10,
    max_depth: int = 3,
    eval_every: int | None = None,
    lr_anneal_every: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **model_options: Any,
) -> dict[str, Any]:
    """Train a baseline on ``samples`` training samples and evaluate it on the test split.

    The data pipeline is the routers' (module docstring): the sample order ``RoutingEnv``
    draws for ``seed``, one optimizer step per ``batch_size`` consecutive samples on the mean
    cross-entropy (plus the model's auxiliary loss: noisy top-k's balancing losses), the
    ``routing-env train`` defaults (SGD, lr 0.3, batches of 16). A final batch shorter than
    ``batch_size`` is trained on too. The caller's global torch RNG is left untouched: the run
    forks it and seeds it with ``seed`` (gating noise), and the parameters are drawn from
    ``seed`` with a private generator. Same seed, same numbers.

    Args:
        name_or_model: a name of ``BASELINE_NAMES`` (built by ``make_baseline`` for the
            dataset) or a baseline model, trained in place (then ``hidden_dim``,
            ``num_modules``, ``max_depth`` are its own and ``model_options`` must be empty).
        dataset: a ``MultiTaskDataset``, suite name or ``.npz`` path (classification).
        samples: number of training samples (a router's routes).
        seed: seed of the sample order, the initialisation and the gating noise.
        lr: learning rate (the module optimizer's of ``routing-env train``).
        batch_size: samples per optimizer step (its ``module_batch_size``).
        optimizer: ``"sgd"``, ``"adam"``, ``"rmsprop"``, ``"adagrad"`` or a callable
            ``(parameters, lr) -> torch.optim.Optimizer``.
        hidden_dim: size of the activations between fc layers.
        num_modules: modules per layer (soft mixture, noisy top-k).
        max_depth: number of fc layers.
        eval_every: samples between test evaluations (default ``samples // 10``, at least 1);
            the test split is also evaluated at the end. An evaluation falls after the first
            optimizer step that reaches its sample count.
        lr_anneal_every: divide the learning rate by 10 every this many training samples
            (``001`` section 4: "annealed by dividing by 10 every 20 epochs"), as the routed
            network's ``module_lr_anneal_every``; ``None`` keeps it constant.
        device: torch device of the model and data.
        progress: show a progress bar.
        **model_options: options of the model (see ``make_baseline``).

    Returns:
        The history, shaped like ``agents.train``'s: per evaluation ``episode`` (samples
        trained on), ``train_accuracy`` and ``train_loss`` (of the training-mode predictions
        before each step, since the previous evaluation), ``test_accuracy``,
        ``per_task_accuracy``, ``route_entropy`` and ``modules_used`` (see
        :func:`evaluate_baseline`); ``final`` (the last evaluation's ``test_accuracy``,
        ``per_task_accuracy``, ``route_entropy``, ``modules_used``), ``baseline`` (the name),
        ``episodes`` (= ``samples``), ``seconds`` (wall clock of training and evaluations) and
        ``parameters`` (trainable parameter count).

    Raises:
        ValueError: for non-positive ``samples``, ``batch_size``, ``eval_every`` or ``lr``, an
            unknown name or optimizer, or a regression dataset.
        FloatingPointError: when the loss stops being finite (lower the learning rate).
    """
    for label, value in (("samples", samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    for label, value in (("eval_every", eval_every), ("lr_anneal_every", lr_anneal_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    data = resolve_dataset(dataset)
    shapes = model_shapes(data)
    if isinstance(name_or_model, BaselineModel):
        if model_options:
            raise ValueError("model options apply to a baseline built by name, not to a model")
        if name_or_model.shapes != shapes:
            raise ValueError(
                f"the model is built for {name_or_model.shapes}, the data has {shapes}"
            )
        model, name = name_or_model, type(name_or_model).__name__
    else:
        model = make_baseline(
            name_or_model,
            shapes,
            hidden_dim=hidden_dim,
            max_depth=max_depth,
            num_modules=num_modules,
            seed=seed,
            **model_options,
        )
        name = name_or_model
    device = torch.device(device)
    model.to(device)
    epoch_length = max(1, samples // 10) if eval_every is None else eval_every
    train = data.split("train")
    x_train = torch.as_tensor(train.x, device=device)
    task_train = torch.as_tensor(train.task, device=device)
    y_train = torch.as_tensor(train.y, device=device)
    order = torch.as_tensor(training_order(len(train), samples, seed), device=device)
    history: dict[str, Any] = {
        "baseline": name,
        "episode": [],
        "train_accuracy": [],
        "train_loss": [],
        "test_accuracy": [],
        "per_task_accuracy": [],
        "route_entropy": [],
        "modules_used": [],
    }
    forked = [device.index or 0] if device.type == "cuda" else []
    start_time = time.perf_counter()
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        optimizer_instance = _make_optimizer(
            optimizer, [p for p in model.parameters() if p.requires_grad], lr
        )
        hits: list[torch.Tensor] = []
        losses: list[float] = []
        seen = 0
        next_evaluation = epoch_length
        bar = tqdm(total=samples, disable=not progress, unit="sample", dynamic_ncols=True)
        model.train()
        model.set_progress(0.0)
        while seen < samples:
            index = order[seen : seen + batch_size]
            output = model.run(x_train[index], task_train[index])
            labels = y_train[index]
            loss = F.cross_entropy(output.logits, labels) + output.auxiliary_loss
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"{name}: loss is {value} after {seen} samples; lower the learning rate"
                )
            optimizer_instance.zero_grad(set_to_none=True)
            loss.backward()
            if lr_anneal_every is not None:
                for group in optimizer_instance.param_groups:
                    group["lr"] = annealed_lr(lr, seen, lr_anneal_every)
            optimizer_instance.step()
            hits.append((output.logits.detach().argmax(dim=1) == labels).cpu())
            losses.extend([value] * len(index))
            seen += len(index)
            model.set_progress(seen / samples)
            bar.update(len(index))
            if seen >= next_evaluation or seen == samples:
                _end_epoch(history, model, data, seen, hits, losses)
                bar.set_postfix(test_acc=f"{history['test_accuracy'][-1]:.3f}")
                hits, losses = [], []
                next_evaluation = (seen // epoch_length + 1) * epoch_length
        bar.close()
    history["episodes"] = samples
    history["seconds"] = time.perf_counter() - start_time
    history["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    history["final"] = {
        key: history[key][-1]
        for key in ("test_accuracy", "per_task_accuracy", "route_entropy", "modules_used")
    }
    return history


def _end_epoch(
    history: dict[str, Any],
    model: BaselineModel,
    data: MultiTaskDataset,
    seen: int,
    hits: list[torch.Tensor],
    losses: list[float],
) -> None:
    """Append the epoch's training statistics and a test evaluation to ``history``."""
    result = evaluate_baseline(model, data)
    history["episode"].append(seen)
    history["train_accuracy"].append(float(torch.cat(hits).float().mean()))
    history["train_loss"].append(float(np.mean(losses)))
    history["test_accuracy"].append(result["accuracy"])
    for key in ("per_task_accuracy", "route_entropy", "modules_used"):
        history[key].append(result[key])
