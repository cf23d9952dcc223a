"""Repeated matrix games: a multi-agent sanity check for the routers.

A routing network with one agent per task is a stochastic game (``001`` 3.1.2, ``000`` 5.1);
the smallest such games are repeated matrix games, where each agent makes a single decision
per round and is paid by the joint action. Their equilibria are known, so they show whether a
multi-agent learner converges (WPL: Abdallah & Lesser, JAIR 2008; WoLF-PHC: Bowling & Veloso,
2002) or cycles. Each agent sees the one decision state ``task = 0, depth = 0``, so tabular
agents are built with ``num_tasks=1, max_depth=1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.base import Agent, Episode


@dataclass(frozen=True)
class MatrixGame:
    """A normal-form game played repeatedly.

    :param name: display name.
    :param payoffs: ``payoffs[i, a_1, ..., a_n]`` is player ``i``'s reward for the joint
        action; shape ``(n_players, actions of player 1, ..., actions of player n)``.
    :param equilibrium: each player's strategy at the game's (unique) Nash equilibrium, to
        measure how far learned policies are from it; ``None`` if not given.
    """

    name: str
    payoffs: np.ndarray
    equilibrium: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        if self.payoffs.ndim != self.payoffs.shape[0] + 1:
            raise ValueError(
                "payoffs must have shape (n_players, actions_1, ..., actions_n); got "
                f"{self.payoffs.shape}"
            )

    @property
    def n_players(self) -> int:
        """Number of players."""
        return self.payoffs.shape[0]

    @property
    def n_actions(self) -> tuple[int, ...]:
        """Number of actions of each player."""
        return self.payoffs.shape[1:]


MATCHING_PENNIES = MatrixGame(
    name="matching pennies",
    # Player 1 wins (+1) when the coins match, player 2 (+1) when they differ; the loser pays -1.
    # Zero-sum; the unique equilibrium is (1/2, 1/2) for both: every pure strategy is exploitable.
    payoffs=np.array([[[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]]]),
    equilibrium=(np.full(2, 0.5), np.full(2, 0.5)),
)

SHAPLEY = MatrixGame(
    name="Shapley's game",
    # Shapley (1964), as in Abdallah & Lesser (JAIR 2008): three actions, a win pays 1, anything
    # else 0. Player 1 wins with (0, 1), (1, 2), (2, 0); player 2 with (0, 2), (1, 0), (2, 1).
    # Not zero-sum; best responses cycle and fictitious play does not converge. The unique
    # equilibrium is (1/3, 1/3, 1/3) for both.
    payoffs=np.array(
        [
            [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        ]
    ),
    equilibrium=(np.full(3, 1 / 3), np.full(3, 1 / 3)),
)

PRISONERS_DILEMMA = MatrixGame(
    name="prisoner's dilemma",
    # Action 0 cooperates, action 1 defects. The classic payoffs T=5 > R=3 > P=1 > S=0 divided
    # by 5 to lie in [0, 1]: mutual cooperation 0.6 each, mutual defection 0.2 each, a lone
    # defector 1 and its victim 0. Defection dominates: the equilibrium is (0, 1) for both.
    payoffs=np.array([[[0.6, 0.0], [1.0, 0.2]], [[0.6, 1.0], [0.0, 0.2]]]),
    equilibrium=(np.array([0.0, 1.0]), np.array([0.0, 1.0])),
)


def play(
    game: MatrixGame, agents: Sequence[Agent], rounds: int, record_every: int = 100
) -> dict[str, Any]:
    """Play ``game`` repeatedly; every agent learns from its own payoff after every round.

    Each round every agent acts in the one decision state ``{"task": 0, "depth": 0}`` with all
    its actions allowed, then learns from a one-decision :class:`~agents.base.Episode` that pays
    it ``game.payoffs[i][joint action]`` as its final reward.

    :param game: the game.
    :param agents: one agent per player, each with a ``policy(task, depth)`` method.
    :param rounds: number of plays.
    :param record_every: record each agent's ``policy(0, 0)`` every this many plays.
    :return: ``{"actions": (rounds, n_players) int array, "rewards": (rounds, n_players)
        array, "record_rounds": (n_records,) plays made before each record, from 0 to
        rounds, "policies": [one (n_records, n_actions_i) array per player]}``.
    """
    if len(agents) != game.n_players:
        raise ValueError(f"{game.name} needs {game.n_players} agents, got {len(agents)}")
    obs = {"activation": np.zeros(1, dtype=np.float32), "task": 0, "depth": 0}
    infos = [{"action_mask": np.ones(n, dtype=np.int8)} for n in game.n_actions]
    actions = np.zeros((rounds, game.n_players), dtype=np.int64)
    rewards = np.zeros((rounds, game.n_players))
    record_rounds: list[int] = []
    policies: list[list[np.ndarray]] = [[] for _ in agents]

    def record(plays: int) -> None:
        record_rounds.append(plays)
        for trajectory, agent in zip(policies, agents, strict=True):
            trajectory.append(agent.policy(0, 0))

    record(0)
    for t in range(rounds):
        joint = tuple(agent.act(obs, info) for agent, info in zip(agents, infos, strict=True))
        actions[t] = joint
        for i, agent in enumerate(agents):
            reward = float(game.payoffs[(i, *joint)])
            rewards[t, i] = reward
            agent.learn(
                Episode(
                    observations=[obs],
                    actions=[joint[i]],
                    rewards=[reward],
                    infos=[infos[i]],
                    final_info={"final_reward": reward},
                )
            )
        if (t + 1) % record_every == 0 or t + 1 == rounds:
            record(t + 1)
    return {
        "actions": actions,
        "rewards": rewards,
        "record_rounds": np.array(record_rounds),
        "policies": [np.array(trajectory) for trajectory in policies],
    }
