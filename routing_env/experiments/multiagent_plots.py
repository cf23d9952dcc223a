"""The figures of a multi-agent run (:func:`agents.multiagent.train_multiagent`'s history)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from routing_env.experiments.plots import draw_routing_map


def _action_name(action: int, extra_action: int, routing: str) -> str:
    if action == extra_action:
        return "stop" if routing == "recurrent" else "PASS"
    return f"m{action}"


def _label(history: Mapping[str, Any], agent: str) -> str:
    return f"{agent} ({history['algorithms'][agent]})"


def plot_multiagent(
    history: Mapping[str, Any],
    out_dir: str | os.PathLike,
    depth: int = 0,
    module: int | None = None,
    title: str = "",
) -> list[str]:
    """The figures of a :func:`train_multiagent` history, as PNG files in ``out_dir``.

    * ``policy_over_time.png``: each agent's distribution at ``depth`` over training
      (``001`` figure 9), tabular agents only.
    * ``module_probability.png``: the probability every agent puts on ``module`` at ``depth``
      over training (``001`` figure 10); default module: the one most tasks' greedy routes
      use at ``depth`` at the end.
    * ``routing_map.png``: task x depth -> most chosen module of the greedy routes at the end
      (``001`` figure 11).
    * ``path_overlap.png``: fraction of shared modules between the greedy routes of every two
      tasks at the end (``000`` figure 5.12).
    * ``selection_entropy.png``: selection entropy of the training routes and of the greedy
      test routes, and each agent's policy entropy, over training.
    * ``accuracy.png``: each agent's test accuracy (or training accuracy) over training.

    Returns the paths written (figures without data are skipped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    out = os.fspath(out_dir)
    episodes = np.asarray(history["routes"])
    extra, routing = history["extra_action"], history["routing"]
    agents = list(history["agents"])
    paths: list[str] = []
    suffix = f" - {title}" if title else ""

    def save(figure: Any, name: str, layout: bool = True) -> None:
        if layout:
            figure.tight_layout()
        path = os.path.join(out, name)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)

    tabular = [agent for agent in agents if history["policy"].get(agent)]
    if module is None:
        module = _default_module(history, depth)
    colours = plt.get_cmap("tab20")
    if tabular:
        columns = min(5, len(tabular))
        rows = math.ceil(len(tabular) / columns)
        figure, axes = plt.subplots(
            rows, columns, figsize=(3.2 * columns, 2.5 * rows), sharex=True, sharey=True
        )
        axes = np.atleast_1d(axes).ravel()
        for axis, agent in zip(axes, tabular, strict=False):
            routes, table = _policy_series(history, agent)
            axis.stackplot(
                routes,
                table[:, depth, :].T,
                colors=[colours(a % 20) for a in range(table.shape[2])],
                labels=[_action_name(a, extra, routing) for a in range(table.shape[2])],
            )
            axis.set_title(_label(history, agent), fontsize=9)
            axis.set_ylim(0, 1)
        for axis in axes[len(tabular) :]:
            axis.axis("off")
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles[::-1], labels[::-1], loc="center right", fontsize=8)
        figure.supxlabel("training routes (all agents)")
        figure.supylabel(f"policy at depth {depth}")
        figure.suptitle(f"each agent's policy at depth {depth}{suffix}")
        figure.tight_layout(rect=(0, 0, 0.93, 1))
        save(figure, "policy_over_time.png", layout=False)

        figure, axis = plt.subplots(figsize=(7, 4))
        for agent in tabular:
            routes, table = _policy_series(history, agent)
            axis.plot(routes, table[:, depth, module], label=_label(history, agent))
        axis.set(
            xlabel="training routes (all agents)",
            ylabel=f"P({_action_name(module, extra, routing)} at depth {depth})",
            ylim=(0, 1),
        )
        axis.set_title(
            f"probability every agent puts on module {module} at depth {depth}\n{title}",
            fontsize=10,
        )
        axis.legend(fontsize=7, ncol=2)
        save(figure, "module_probability.png")

    if history.get("routing_map"):
        grid = np.asarray(history["routing_map"][-1])
        figure, axis = plt.subplots(figsize=(2.5 + 0.8 * grid.shape[1], 1.2 + 0.4 * grid.shape[0]))
        draw_routing_map(
            axis, grid, f"routing map (greedy; P = PASS/stop)\n{title}", extra, "task (agent)"
        )
        axis.title.set_fontsize(9)
        save(figure, "routing_map.png")
    if history.get("path_overlap"):
        overlap = np.asarray(history["path_overlap"][-1])
        figure, axis = plt.subplots(figsize=(1.5 + 0.5 * len(overlap), 1.2 + 0.45 * len(overlap)))
        image = axis.imshow(overlap, vmin=0, vmax=1, cmap="viridis")
        for (t, u), value in np.ndenumerate(overlap):
            colour = "k" if value > 0.6 else "w"
            axis.text(u, t, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
        axis.set(
            xlabel="task",
            ylabel="task",
            xticks=range(len(overlap)),
            yticks=range(len(overlap)),
            title=f"path overlap of greedy routes{suffix}",
        )
        figure.colorbar(image, ax=axis, label="fraction of shared modules")
        save(figure, "path_overlap.png")

    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].plot(episodes, history["train_route_entropy"], label="training routes (exploring)")
    if history.get("route_entropy"):
        axes[0].plot(episodes, history["route_entropy"], label="greedy test routes")
    axes[0].axhline(math.log(history["num_actions"]), color="grey", linestyle=":", label="uniform")
    axes[0].set(xlabel="training routes", ylabel="nats", title="selection entropy per depth")
    axes[0].legend(fontsize=8)
    for agent in tabular:
        axes[1].plot(episodes, history["policy_entropy"][agent], label=_label(history, agent))
    axes[1].set(xlabel="training routes", ylabel="nats", title="policy entropy of each agent")
    if tabular:
        axes[1].legend(fontsize=6, ncol=2)
    figure.suptitle(title)
    save(figure, "selection_entropy.png")

    accuracy = history.get("test_accuracy") or history["train_accuracy"]
    kind = "test" if history.get("test_accuracy") else "training"
    figure, axis = plt.subplots(figsize=(7, 4))
    styles = {name: i for i, name in enumerate(sorted(set(history["algorithms"].values())))}
    for agent in agents:
        style = ["-", "--", ":", "-."][styles[history["algorithms"][agent]] % 4]
        axis.plot(episodes, accuracy[agent], style, label=_label(history, agent))
    axis.set(xlabel="training routes (all agents)", ylabel=f"{kind} accuracy of its task")
    axis.set_title(f"accuracy of each agent\n{title}", fontsize=10)
    axis.legend(fontsize=7, ncol=2)
    save(figure, "accuracy.png")
    return paths


def _policy_series(history: Mapping[str, Any], agent: str) -> tuple[np.ndarray, np.ndarray]:
    """Routes and policy snapshots of ``agent``, starting with the policy before training."""
    routes = np.asarray(history["routes"])
    table = np.asarray(history["policy"][agent])
    initial = history.get("initial_policy", {}).get(agent)
    if initial is None:
        return routes, table
    return np.concatenate([[0], routes]), np.concatenate([[initial], table])


def _default_module(history: Mapping[str, Any], depth: int) -> int:
    """The module most tasks' greedy routes use at ``depth`` at the end (else module 0)."""
    if history.get("routing_map"):
        column = [row[depth] for row in history["routing_map"][-1]]
        modules = [a for a in column if 0 <= a != history["extra_action"]]
        if modules:
            return Counter(modules).most_common(1)[0][0]
    return 0
