"""Self-play of the tabular routers on repeated matrix games: who finds the mixed equilibrium?

Two copies of each algorithm (WPL, WoLF-PHC, REINFORCE, Q-learning) play matching pennies and
Shapley's game against each other (``agents.matrix_games``). Both games have a single, mixed,
equilibrium: (1/2, 1/2) and (1/3, 1/3, 1/3) for both players. A learner that follows its
gradient against an adapting opponent tends to circle around such an equilibrium or spiral
out to pure strategies; WPL (Abdallah & Lesser, JAIR 2008) and WoLF-PHC (Bowling & Veloso,
2002) were designed to converge to it.

The policy learners start away from the equilibrium (matching pennies: player 1 plays action
0 with probability 0.9, player 2 with 0.2; Shapley: (0.8, 0.1, 0.1) and (0.1, 0.1, 0.8)), so
convergence has to be earned. Q-learning's policy is epsilon-greedy in its values and starts
from all-zero values. Writes ``matching_pennies.png`` (player 1's against player 2's
probability of action 0) and ``shapley.png`` (both players' policies on the simplex) to
``--out`` and prints the final policies with their distance to the equilibrium.

    python examples/matrix_games.py --out runs/matrix_games --rounds 20000
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from agents.base import Agent
from agents.matrix_games import MATCHING_PENNIES, SHAPLEY, MatrixGame, play
from agents.q_learning import QLearning
from agents.reinforce import Reinforce
from agents.wolf_phc import WoLFPHC
from agents.wpl import WPL

matplotlib.use("Agg")  # files only; no display needed

# name -> factory(num_actions, seed); one state (task 0, depth 0) per agent
ALGORITHMS: dict[str, Callable[[int, int], Agent]] = {
    "WPL": lambda n, seed: WPL(1, 1, n, lr=0.1, seed=seed),
    "WoLF-PHC": lambda n, seed: WoLFPHC(
        1, 1, n, lr=0.1, delta_win=0.001, delta_lose=0.004, epsilon=0.05, seed=seed
    ),
    "REINFORCE": lambda n, seed: Reinforce(1, 1, n, lr=0.1, seed=seed),
    "Q-learning": lambda n, seed: QLearning(1, 1, n, lr=0.1, epsilon=0.1, seed=seed),
}

STARTS = {
    MATCHING_PENNIES.name: (np.array([0.9, 0.1]), np.array([0.2, 0.8])),
    SHAPLEY.name: (np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.1, 0.8])),
}


def start_at(agent: Agent, policy: np.ndarray) -> None:
    """Set a policy learner's initial policy in its one state (Q-learning has none to set)."""
    if isinstance(agent, WPL):
        agent.pi[0, 0] = policy
    elif isinstance(agent, WoLFPHC):
        agent.pi[0, 0] = policy
        agent.pibar[0, 0] = policy
    elif isinstance(agent, Reinforce):
        agent.theta[0, 0] = np.log(policy)  # softmax(log p) = p


def self_play(game: MatrixGame, name: str, rounds: int, seed: int) -> dict:
    """Two agents of algorithm ``name`` play ``game``; returns :func:`play`'s record."""
    agents = [ALGORITHMS[name](n, seed + player) for player, n in enumerate(game.n_actions)]
    for agent, policy in zip(agents, STARTS[game.name], strict=True):
        start_at(agent, policy)
    return play(game, agents, rounds, record_every=max(1, rounds // 1000))


def distance(policies: list[np.ndarray], game: MatrixGame) -> np.ndarray:
    """Largest deviation of either player's policy from the equilibrium, per record."""
    return np.max(
        [np.abs(p - eq).max(axis=1) for p, eq in zip(policies, game.equilibrium, strict=True)],
        axis=0,
    )


def plot_pennies(results: dict[str, dict], path: str) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(9, 9), sharex=True, sharey=True)
    for ax, (name, out) in zip(axes.flat, results.items(), strict=True):
        x, y = out["policies"][0][:, 0], out["policies"][1][:, 0]
        ax.scatter(x, y, c=out["record_rounds"], cmap="viridis", s=4)
        ax.plot(x, y, color="grey", lw=0.4, alpha=0.5)
        ax.plot(x[0], y[0], "ks", label="start")
        ax.plot(0.5, 0.5, "r*", ms=14, label="equilibrium")
        ax.set(title=name, xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    for ax in axes[1]:
        ax.set_xlabel("player 1: P(action 0)")
    for ax in axes[:, 0]:
        ax.set_ylabel("player 2: P(action 0)")
    axes[0, 0].legend(loc="upper left")
    rounds = next(iter(results.values()))["record_rounds"][-1]
    fig.suptitle(f"Matching pennies, self-play, {rounds} rounds (colour: time)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# corners of the probability simplex of three actions, in the plane
CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def plot_shapley(results: dict[str, dict], path: str) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    for ax, (name, out) in zip(axes.flat, results.items(), strict=True):
        ax.fill(*CORNERS.T, facecolor="none", edgecolor="black", lw=0.8)
        for label, corner in zip(("a0", "a1", "a2"), CORNERS, strict=True):
            ax.annotate(label, corner, xytext=(corner - 0.5) * 0.12 + corner, ha="center")
        for player, colour in ((0, "tab:blue"), (1, "tab:orange")):
            xy = out["policies"][player] @ CORNERS
            ax.plot(*xy.T, color=colour, lw=0.6, alpha=0.7, label=f"player {player + 1}")
            ax.plot(*xy[0], "s", color=colour)
            ax.plot(*xy[-1], "o", color=colour, mec="black")
        ax.plot(*(np.full(3, 1 / 3) @ CORNERS), "r*", ms=14, label="equilibrium")
        ax.set_title(name, pad=20)
        ax.set_aspect("equal")
        ax.axis("off")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    rounds = next(iter(results.values()))["record_rounds"][-1]
    fig.suptitle(f"Shapley's game, self-play, {rounds} rounds (square: start, circle: end)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/matrix_games", help="folder for the PNG files")
    parser.add_argument("--rounds", type=int, default=20_000, help="plays per game")
    parser.add_argument("--seed", type=int, default=0, help="seed of player 1 (player 2: +1)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    print(
        f"{'game':18} {'algorithm':11} {'player 1 final':>22} {'player 2 final':>22} "
        f"{'dist final':>10} {'dist 2nd half':>13} {'secs':>5}"
    )
    for game, plot, filename in (
        (MATCHING_PENNIES, plot_pennies, "matching_pennies.png"),
        (SHAPLEY, plot_shapley, "shapley.png"),
    ):
        results = {}
        for name in ALGORITHMS:
            started = time.perf_counter()
            out = results[name] = self_play(game, name, args.rounds, args.seed)
            gap = distance(out["policies"], game)
            final = ["[" + " ".join(f"{x:.2f}" for x in p[-1]) + "]" for p in out["policies"]]
            print(
                f"{game.name:18} {name:11} {final[0]:>22} {final[1]:>22} {gap[-1]:10.3f} "
                f"{gap[len(gap) // 2 :].mean():13.3f} {time.perf_counter() - started:5.1f}"
            )
        plot(results, os.path.join(args.out, filename))
    print(
        "dist = largest |P(a) - P_equilibrium(a)| over both players and all actions; "
        f"'2nd half' averages it over the last half of the plays. Plots in {args.out}/"
    )


if __name__ == "__main__":
    main()
