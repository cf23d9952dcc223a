"""Repeated matrix games, and WPL self-play reaching the mixed equilibrium of matching pennies."""

from __future__ import annotations

import numpy as np
import pytest

from agents.base import Episode
from agents.matrix_games import MATCHING_PENNIES, PRISONERS_DILEMMA, SHAPLEY, MatrixGame, play
from agents.q_learning import QLearning
from agents.wpl import WPL


@pytest.mark.parametrize("game", [MATCHING_PENNIES, SHAPLEY, PRISONERS_DILEMMA])
def test_equilibria_are_equilibria(game):
    # Against the other's equilibrium strategy, no action of a player beats its own strategy.
    p1, p2 = game.equilibrium
    value_1 = game.payoffs[0] @ p2  # player 1's payoff per action
    value_2 = p1 @ game.payoffs[1]
    assert value_1.max() == pytest.approx(p1 @ value_1)
    assert value_2.max() == pytest.approx(value_2 @ p2)
    assert np.abs(game.payoffs).max() <= 1.0


def test_payoffs_of_the_games():
    assert (MATCHING_PENNIES.payoffs[0] == [[1, -1], [-1, 1]]).all()
    assert (MATCHING_PENNIES.payoffs.sum(axis=0) == 0).all()  # zero-sum
    # Shapley: exactly one winner unless both play the same action.
    assert (SHAPLEY.payoffs.sum(axis=0) == 1 - np.eye(3)).all()
    # prisoner's dilemma: T > R > P > S for player 1, and symmetric
    (r, s), (t, p) = PRISONERS_DILEMMA.payoffs[0]
    assert t > r > p > s
    assert (PRISONERS_DILEMMA.payoffs[1] == PRISONERS_DILEMMA.payoffs[0].T).all()
    assert SHAPLEY.n_players == 2 and SHAPLEY.n_actions == (3, 3)


def test_matrix_game_checks_the_payoff_shape():
    with pytest.raises(ValueError, match="n_players"):
        MatrixGame("bad", np.zeros((2, 2)))


class Scripted:
    """Plays a fixed sequence and records what it was given."""

    def __init__(self, actions):
        self.actions, self.seen, self.episodes = list(actions), [], []

    def act(self, obs, info):
        self.seen.append((dict(obs), info["action_mask"].tolist()))
        return self.actions[len(self.seen) - 1]

    def learn(self, episode: Episode):
        self.episodes.append(episode)

    def policy(self, task, depth):
        return np.array([len(self.episodes), 0.0])


def test_play_pays_each_player_and_records():
    one, two = Scripted([0, 0, 1]), Scripted([0, 1, 1])
    out = play(MATCHING_PENNIES, [one, two], rounds=3, record_every=2)
    assert out["actions"].tolist() == [[0, 0], [0, 1], [1, 1]]
    assert out["rewards"].tolist() == [[1, -1], [-1, 1], [1, -1]]
    assert out["record_rounds"].tolist() == [0, 2, 3]
    np.testing.assert_array_equal(out["policies"][0][:, 0], [0, 2, 3])
    observation, mask = one.seen[0]
    assert observation["task"] == 0 and observation["depth"] == 0 and mask == [1, 1]
    episode = two.episodes[1]
    assert episode.actions == [1] and episode.rewards == [1.0]
    assert episode.final_info == {"final_reward": 1.0}
    assert episode.returns().tolist() == [1.0]


def test_play_with_tabular_agents_is_seeded():
    def run(seed):
        agents = [QLearning(1, 1, 2, seed=seed + p) for p in range(2)]
        return play(PRISONERS_DILEMMA, agents, rounds=300, record_every=100)

    first, again = run(0), run(0)
    np.testing.assert_array_equal(first["actions"], again["actions"])
    assert first["policies"][0].shape == (4, 2)
    # defection dominates: both Q-learners end up defecting (epsilon-greedy, epsilon = 0.1)
    np.testing.assert_allclose(first["policies"][0][-1], [0.1, 0.9])
    np.testing.assert_allclose(first["policies"][1][-1], [0.1, 0.9])


# ---------------------------------------------------------------------- WPL self-play


def self_play(game, agents, rounds):
    """Play ``G`` independent games at once: game ``g`` is task ``g`` of each player's agent.

    The rows of a tabular agent never interact, so this is ``G`` separate self-plays run with
    the batch methods. Returns the actions ``(rounds, G, 2)`` and player 1's and 2's
    ``pi(action 0)`` after every round, ``(rounds, G, 2)``.
    """
    games = agents[0].num_tasks
    states = {"task": np.arange(games), "depth": np.zeros(games, dtype=np.int64)}
    masks = [np.ones((games, n), dtype=np.int8) for n in game.n_actions]
    actions = np.zeros((rounds, games, 2), dtype=np.int64)
    p_first = np.zeros((rounds, games, 2))
    for t in range(rounds):
        joint = [agent.act_batch(states, mask) for agent, mask in zip(agents, masks, strict=True)]
        actions[t] = np.stack(joint, axis=1)
        for player, agent in enumerate(agents):
            rewards = game.payoffs[player][joint[0], joint[1]]
            agent.learn_batch(
                [
                    Episode(
                        [{"task": g, "depth": 0}],
                        [int(joint[player][g])],
                        [float(rewards[g])],
                        final_info={"final_reward": float(rewards[g])},
                    )
                    for g in range(games)
                ]
            )
            p_first[t, :, player] = agent.pi[:, 0, 0]
    return actions, p_first


def far_from_equilibrium(weighting: str, games: int) -> list[WPL]:
    agents = [WPL(games, 1, 2, lr=0.1, weighting=weighting, seed=seed) for seed in (1, 2)]
    agents[0].pi[:, 0] = [0.9, 0.1]
    agents[1].pi[:, 0] = [0.2, 0.8]
    return agents


def test_wpl_self_play_reaches_the_mixed_equilibrium_of_matching_pennies():
    games, rounds = 4, 11_000
    actions, p_first = self_play(MATCHING_PENNIES, far_from_equilibrium("original", games), rounds)
    # every 1,000-play window of the last 10,000 plays, for both players of every game
    windows = (actions[-10_000:] == 0).reshape(10, 1000, games, 2).mean(axis=1)
    assert np.abs(windows - 0.5).max() < 0.1, windows
    # and the policies themselves stay mixed, around (1/2, 1/2)
    late = p_first[-10_000:]
    assert np.abs(late.mean(axis=0) - 0.5).max() < 0.05
    assert late.min() > 0.05 and late.max() < 0.95


def test_wpl_printed_weighting_collapses_to_pure_strategies():
    games = 4
    actions, p_first = self_play(MATCHING_PENNIES, far_from_equilibrium("printed", games), 2_000)
    # both players end pure: one wins every round, the loser cannot move, since a negative
    # delta is scaled by 1 - pi(a) = 0
    final = p_first[-1]
    assert np.minimum(final, 1 - final).max() < 1e-3
    late_actions = actions[-500:]
    assert (late_actions == late_actions[0]).all()
