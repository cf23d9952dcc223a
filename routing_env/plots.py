"""Plots of training runs (PNG files, matplotlib's Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(
    history: Mapping[str, Any], out_dir: str | os.PathLike, title: str = ""
) -> list[str]:
    """Learning curves and the final routing map of a :func:`agents.train` history.

    Writes ``learning_curves.png`` (test and train accuracy, mean reward, route entropy and
    modules in use per epoch) and, when evaluations exist, ``routing_map.png`` (task x depth ->
    most chosen action). Returns the paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    episodes = history["episode"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(episodes, history["train_accuracy"], label="train (exploring)")
    if history.get("test_accuracy"):
        axes[0].plot(episodes, history["test_accuracy"], label="test (greedy)")
    axes[0].set(xlabel="routes", ylabel="accuracy", title="accuracy")
    axes[0].legend()
    axes[1].plot(episodes, history["mean_reward"])
    axes[1].set(xlabel="routes", ylabel="mean return", title="return of training routes")
    if history.get("route_entropy"):
        axes[2].plot(episodes, history["route_entropy"], color="C2")
        axes[2].set(xlabel="routes", ylabel="nats", title="selection entropy (test)")
        twin = axes[2].twinx()
        twin.plot(episodes, history["modules_used"], color="C3", linestyle="--")
        twin.set_ylabel("modules used", color="C3")
    figure.suptitle(title)
    figure.tight_layout()
    paths = [os.path.join(os.fspath(out_dir), "learning_curves.png")]
    figure.savefig(paths[0], dpi=110)
    plt.close(figure)
    if history.get("routing_map"):
        paths.append(plot_routing_map(history["routing_map"][-1], out_dir, title=title))
    return paths


def plot_routing_map(routing_map: Any, out_dir: str | os.PathLike, title: str = "") -> str:
    """Heat map of the routing map (task x depth -> most chosen action) as ``routing_map.png``."""
    grid = np.asarray(routing_map)
    figure, axis = plt.subplots(figsize=(1.2 + 0.7 * grid.shape[1], 1.0 + 0.35 * grid.shape[0]))
    masked = np.ma.masked_less(grid, 0)
    axis.imshow(masked, cmap="tab20", aspect="auto", vmin=0, vmax=max(19, int(grid.max())))
    for (task, depth), action in np.ndenumerate(grid):
        axis.text(depth, task, "-" if action < 0 else str(action), ha="center", va="center")
    axis.set(
        xlabel="depth",
        ylabel="task",
        title=title or "routing map",
        xticks=range(grid.shape[1]),
        yticks=range(grid.shape[0]),
    )
    figure.tight_layout()
    path = os.path.join(os.fspath(out_dir), "routing_map.png")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
