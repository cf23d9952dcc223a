"""Plots of training runs (PNG files, matplotlib's Agg backend)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
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
    draw_routing_map(axis, grid, title or "routing map")
    figure.tight_layout()
    path = os.path.join(os.fspath(out_dir), "routing_map.png")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_routing_maps(
    routing_maps: Mapping[str, Any], path: str | os.PathLike, extra_action: int | None = None
) -> str:
    """Several routing maps side by side, titled by their keys (e.g. one per method), in one
    PNG at ``path``; ``extra_action`` (PASS / stop) is drawn as "P"."""
    if not routing_maps:
        raise ValueError("no routing maps to plot")
    grids = {name: np.asarray(grid) for name, grid in routing_maps.items()}
    rows, depths = max(g.shape[0] for g in grids.values()), max(g.shape[1] for g in grids.values())
    figure, axes = plt.subplots(
        1, len(grids), figsize=(len(grids) * (1.6 + 0.7 * depths), 1.2 + 0.35 * rows), squeeze=False
    )
    for axis, (name, grid) in zip(axes[0], grids.items(), strict=True):
        draw_routing_map(axis, grid, name, extra_action)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return os.fspath(path)


def draw_routing_map(
    axis: Any, grid: np.ndarray, title: str, extra_action: int | None = None, ylabel: str = "task"
) -> None:
    """Draw a routing map (task x depth -> action, ``-1`` = not reached) on a matplotlib axis:
    one colour per action, the action's number in each cell ("P" for ``extra_action``, PASS
    or stop, when given)."""
    masked = np.ma.masked_less(grid, 0)
    axis.imshow(masked, cmap="tab20", aspect="auto", vmin=0, vmax=max(19, int(grid.max())))
    for (task, depth), action in np.ndenumerate(grid):
        text = "-" if action < 0 else "P" if action == extra_action else str(action)
        axis.text(depth, task, text, ha="center", va="center")
    axis.set(
        xlabel="depth",
        ylabel=ylabel,
        title=title,
        xticks=range(grid.shape[1]),
        yticks=range(grid.shape[0]),
    )


def plot_curves(
    records: Sequence[Mapping[str, Any]],
    key: str,
    path: str | os.PathLike,
    ylabel: str,
    title: str = "",
    reference: float | None = None,
) -> str:
    """One line per method: the mean over seeds of ``record["curve"][key]`` against
    ``record["curve"]["samples"]``, with the band between the seeds' lowest and highest values;
    ``reference`` (e.g. the majority rate) as a dashed line. Records are those of
    :func:`routing_env.experiments.runs.run`; a method's seeds must share their evaluation
    points."""
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for number, method in enumerate(dict.fromkeys(r["method"] for r in records)):
        runs = [r for r in records if r["method"] == method]
        samples = runs[0]["curve"]["samples"]
        values = np.array(
            [[np.nan if v is None else v for v in r["curve"][key]] for r in runs], dtype=float
        )
        color = f"C{number % 10}"
        style = "-" if number < 10 else "--"
        axis.plot(samples, np.nanmean(values, axis=0), style, color=color, label=method)
        if len(runs) > 1:
            axis.fill_between(
                samples,
                np.nanmin(values, axis=0),
                np.nanmax(values, axis=0),
                color=color,
                alpha=0.12,
            )
    if reference is not None:
        axis.axhline(reference, color="grey", linestyle=":", label="majority rate")
    axis.set(xlabel="training samples", ylabel=ylabel, title=title)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return os.fspath(path)


def plot_nonstationarity(runs: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> str:
    """The measurements of ``routing-env bench-nonstationarity`` against training routes:
    greedy test accuracy, return drift of the frozen snapshots, selection entropy and
    routing-map stability; one colour per agent, solid with training modules and dashed with
    frozen ones (dotted: pretrained), mean over seeds. ``runs`` are the entries of its
    ``results.json`` (``agent``, ``condition``, ``history``)."""
    panels = (
        ("accuracy", "test accuracy (greedy)"),
        ("return_drift", "return drift of the last snapshot"),
        ("route_entropy", "selection entropy (nats)"),
        ("map_stability", "routing-map stability"),
    )
    styles = {"trained": "-", "frozen": "--", "pretrained": ":"}
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    agents = list(dict.fromkeys(run["agent"] for run in runs))
    for (key, title), axis in zip(panels, axes, strict=True):
        for number, agent in enumerate(agents):
            for condition in dict.fromkeys(run["condition"] for run in runs):
                mine = [r for r in runs if r["agent"] == agent and r["condition"] == condition]
                if not mine:
                    continue
                routes = mine[0]["history"]["routes"]
                values = np.array([r["history"][key] for r in mine], dtype=float)
                with warnings.catch_warnings():
                    # Map stability has no value at the first measurement (nothing before it).
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(values, axis=0)
                axis.plot(
                    routes,
                    mean,
                    styles.get(condition, "-."),
                    color=f"C{number % 10}",
                    label=f"{agent} ({condition})",
                )
        axis.set(xlabel="training routes", title=title)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return os.fspath(path)
