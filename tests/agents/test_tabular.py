"""Tabular routers: each update rule against hand-computed numbers, then the behaviour every
tabular agent shares (masks, greedy mode, batches, seeding, checkpoints).

The agents are imported from their modules: ``agents/__init__`` may not export them yet.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.advantage import AdvantageLearning
from agents.base import Episode, EpisodeBatch
from agents.persistence import load, save
from agents.q_learning import QLearning
from agents.reinforce import Reinforce
from agents.tabular import bootstrapped_targets, sample, visit_index, visit_order
from agents.wolf_phc import WoLFPHC
from agents.wpl import WPL

AGENTS = [WPL, QLearning, AdvantageLearning, Reinforce, WoLFPHC]


def obs(task: int = 0, depth: int = 0) -> dict:
    return {"activation": np.zeros(1, dtype=np.float32), "task": task, "depth": depth}


def one_step(action: int, reward: float, mask=None, task: int = 0, depth: int = 0) -> Episode:
    """A route of one decision whose whole return is the final reward ``reward``."""
    infos = [] if mask is None else [{"action_mask": np.asarray(mask, dtype=np.int8)}]
    return Episode(
        [obs(task, depth)], [action], [reward], infos, final_info={"final_reward": reward}
    )


# ---------------------------------------------------------------------- WPL


def test_wpl_original_weighting_positive_delta():
    agent = WPL(1, 1, 2, lr=0.5)
    agent.pi[0, 0] = [0.8, 0.2]
    agent.learn(one_step(action=1, reward=1.0))
    # Rbar = 0.5 * 0 + 0.5 * 1 = 0.5; delta = 1 - 0.5 = 0.5 > 0, times (1 - pi(1)) = 0.8 -> 0.4
    # pi(1) = 0.2 + 0.5 * 0.4 = 0.4; [0.8, 0.4] / 1.2 = [2/3, 1/3]
    assert agent.rbar[0, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(agent.pi[0, 0], [2 / 3, 1 / 3])


def test_wpl_original_weighting_negative_delta():
    agent = WPL(1, 1, 2, lr=0.5)
    agent.pi[0, 0] = [0.8, 0.2]
    agent.learn(one_step(action=0, reward=-1.0))
    # Rbar = -0.5; delta = -1 + 0.5 = -0.5 < 0, times pi(0) = 0.8 -> -0.4
    # pi(0) = 0.8 - 0.5 * 0.4 = 0.6; [0.6, 0.2] / 0.8 = [0.75, 0.25]
    assert agent.rbar[0, 0] == pytest.approx(-0.5)
    np.testing.assert_allclose(agent.pi[0, 0], [0.75, 0.25])


def test_wpl_printed_weighting_swaps_the_weights():
    positive = WPL(1, 1, 2, lr=0.5, weighting="printed")
    positive.pi[0, 0] = [0.8, 0.2]
    positive.learn(one_step(action=1, reward=1.0))
    # delta = 0.5 > 0, times pi(1) = 0.2 -> 0.1; pi(1) = 0.2 + 0.05 = 0.25; [0.8, 0.25] / 1.05
    np.testing.assert_allclose(positive.pi[0, 0], [0.8 / 1.05, 0.25 / 1.05])

    negative = WPL(1, 1, 2, lr=0.5, weighting="printed")
    negative.pi[0, 0] = [0.8, 0.2]
    negative.learn(one_step(action=0, reward=-1.0))
    # delta = -0.5 < 0, times (1 - pi(0)) = 0.2 -> -0.1; pi(0) = 0.8 - 0.05 = 0.75
    # [0.75, 0.2] / 0.95
    np.testing.assert_allclose(negative.pi[0, 0], [0.75 / 0.95, 0.2 / 0.95])


def test_wpl_projection_clips_to_the_unit_interval():
    high = WPL(1, 1, 2, lr=0.5)
    high.pi[0, 0] = [0.9, 0.1]
    high.learn(one_step(action=0, reward=10.0))
    # Rbar = 5; delta = 5 * (1 - 0.9) = 0.5; pi(0) = 0.9 + 0.25 = 1.15 -> clip 1
    # [1, 0.1] / 1.1
    np.testing.assert_allclose(high.pi[0, 0], [1 / 1.1, 0.1 / 1.1])

    low = WPL(1, 1, 2, lr=0.5)
    low.learn(one_step(action=0, reward=-10.0))
    # Rbar = -5; delta = -5 * 0.5 = -2.5; pi(0) = 0.5 - 1.25 = -0.75 -> clip 0 -> [0, 1]
    np.testing.assert_allclose(low.pi[0, 0], [0.0, 1.0])

    floor = WPL(1, 1, 2, lr=0.5, min_prob=0.05)
    floor.learn(one_step(action=0, reward=-10.0))
    # the same step clipped to [0.05, 1]: [0.05, 0.5] / 0.55
    np.testing.assert_allclose(floor.pi[0, 0], [0.05 / 0.55, 0.5 / 0.55])


def test_wpl_pure_strategy_pushed_below_zero_restarts_uniform():
    agent = WPL(1, 1, 3, lr=0.9)
    agent.pi[0, 0] = [1.0, 0.0, 0.0]
    agent.learn(one_step(action=0, reward=-10.0, mask=[1, 1, 0]))
    # Rbar = -9; delta = -1 * pi(0) = -1; pi(0) = 1 - 0.9 = 0.1 > 0: still pure after clip.
    np.testing.assert_allclose(agent.pi[0, 0], [1.0, 0.0, 0.0])
    agent.rbar[0, 0] = 5.0
    agent.learn(one_step(action=0, reward=-10.0, mask=[1, 1, 0]))
    # Rbar = 0.1*5 - 9 = -8.5; delta = -1.5; pi(0) = 1 - 1.35 < 0: nothing left, so the
    # allowed actions restart uniform and the masked one keeps its (zero) share.
    np.testing.assert_allclose(agent.pi[0, 0], [0.5, 0.5, 0.0])
    assert np.isfinite(agent.pi).all()


def test_wpl_baseline_is_per_state_and_returns_are_discounted():
    agent = WPL(1, 2, 2, lr=0.5, gamma=0.5)
    route = Episode(
        [obs(depth=0), obs(depth=1)], [0, 1], [0.5, 1.0], final_info={"final_reward": 1.0}
    )
    agent.learn(route)
    # returns: the final reward 1 undiscounted, plus 0.5 at depth 0 -> R = [1.5, 1.0]
    # depth 0: Rbar = 0.75, delta = 0.75 * (1 - 0.5) = 0.375, pi(0) = 0.5 + 0.1875 = 0.6875
    # depth 1: Rbar = 0.5, delta = 0.5 * 0.5 = 0.25, pi(1) = 0.5 + 0.125 = 0.625
    np.testing.assert_allclose(agent.rbar[0], [0.75, 0.5])
    np.testing.assert_allclose(agent.pi[0, 0], [0.6875 / 1.1875, 0.5 / 1.1875])
    np.testing.assert_allclose(agent.pi[0, 1], [0.5 / 1.125, 0.625 / 1.125])
    agent.learn(route)
    # second visit: Rbar(depth 0) = 0.5 * 0.75 + 0.5 * 1.5 = 1.125
    np.testing.assert_allclose(agent.rbar[0], [1.125, 0.75])


def test_wpl_masked_actions_keep_their_share():
    agent = WPL(1, 1, 3, lr=0.5)
    agent.learn(one_step(action=0, reward=1.0, mask=[1, 1, 0]))
    # acting policy [1/2, 1/2, 0]; delta = 0.5 * (1 - 1/2) = 0.25; pi(0) = 0.5 + 0.125
    # [0.625, 0.5] / 1.125 = [5/9, 4/9], written back into the allowed share 2/3
    np.testing.assert_allclose(agent.pi[0, 0], [10 / 27, 8 / 27, 1 / 3])
    np.testing.assert_allclose(agent.policy(0, 0, np.array([1, 1, 0])), [5 / 9, 4 / 9, 0])


def reference_wpl(agent: WPL, routes: list[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """``000`` Algorithm 5.1 written out one decision at a time, route by route (the tables
    WPL.learn_batch must give exactly; the masks as in its docstring)."""
    pi, rbar, lr = agent.pi.copy(), agent.rbar.copy(), agent.lr
    for route in routes:
        for i, R in enumerate(route.returns(agent.gamma)):
            t, d = route.observations[i]["task"], route.observations[i]["depth"]
            a = route.actions[i]
            info = route.infos[i] if route.infos else {}
            mask = np.asarray(info.get("action_mask", np.ones(agent.num_actions))) > 0
            rbar[t, d] = (1.0 - lr) * rbar[t, d] + lr * R
            delta = R - rbar[t, d]
            old = pi[t, d].copy()
            share = (old * mask).sum()
            acting = old * mask / share if share > 0 else mask / mask.sum()
            if agent.weighting == "original":
                delta *= (1.0 - acting[a]) if delta > 0 else acting[a]
            else:
                delta *= (1.0 - acting[a]) if delta < 0 else acting[a]
            acting[a] += lr * delta
            acting = np.minimum(np.maximum(acting, agent.min_prob), 1.0) * mask
            if acting.sum() <= 0:
                acting = mask.astype(float)
            acting /= acting.sum()
            pi[t, d] = np.where(mask, acting * share, old)
    return pi, rbar


def wpl_routes(seed: int, count: int, invalid: float) -> list[Episode]:
    """Routes over 2 tasks and 3 depths (states visited many times), random masks, a share
    ``invalid`` of masked actions taken (routes ended by an invalid action) and rewards large
    enough to push a state to a pure strategy and below."""
    rng = np.random.default_rng(seed)
    routes = []
    for _ in range(count):
        task, length = int(rng.integers(2)), int(rng.integers(1, 4))
        masks = [(rng.random(5) < 0.7).astype(np.int8) for _ in range(length)]
        for mask in masks:
            mask[rng.integers(5)] = 1
        actions = [
            int(rng.integers(5)) if rng.random() < invalid else int(rng.choice(np.flatnonzero(m)))
            for m in masks
        ]
        rewards = (rng.normal(size=length) * rng.choice([0.5, 8.0])).tolist()
        observations = [obs(task, d) for d in range(length)]
        infos = [{"action_mask": m} for m in masks]
        final = {"final_reward": rewards[-1]}
        routes.append(Episode(observations, actions, rewards, infos, final_info=final))
    return routes


@pytest.mark.parametrize("invalid", [0.0, 0.1])
@pytest.mark.parametrize(
    "options", [{}, {"weighting": "printed"}, {"min_prob": 0.05}, {"gamma": 0.7, "lr": 0.9}]
)
def test_wpl_learn_batch_is_algorithm_5_1_one_decision_at_a_time(options, invalid):
    """The vectorised update (groups of states, lines applied to whole groups) against the
    plain loop, exactly, on random routes with repeated states, masks and invalid actions."""
    routes = wpl_routes(seed=5, count=300, invalid=invalid)
    options = {"lr": 0.5, **options}
    expected = reference_wpl(WPL(2, 3, 5, **options), routes)
    batched, listed = WPL(2, 3, 5, **options), WPL(2, 3, 5, **options)
    batch = as_batch(routes, num_actions=5)
    batched.learn_batch(batch[:170])
    batched.learn_batch(batch[170:])
    listed.learn_batch(routes)
    for agent in (batched, listed):
        np.testing.assert_array_equal(agent.pi, expected[0])
        np.testing.assert_array_equal(agent.rbar, expected[1])
    if not batched.min_prob:
        assert (batched.pi == 0).any(), "some action should have been pushed to 0"


def test_wpl_rejects_unknown_weighting():
    with pytest.raises(ValueError, match="weighting"):
        WPL(1, 1, 2, weighting="swapped")


# ---------------------------------------------------------------------- Q-learning


def q_route(mask_at_depth_1) -> Episode:
    infos = [{"action_mask": np.array([1, 1], dtype=np.int8)}]
    if mask_at_depth_1 is not None:
        infos.append({"action_mask": np.array(mask_at_depth_1, dtype=np.int8)})
    return Episode(
        [obs(depth=0), obs(depth=1)], [0, 0], [0.5, 1.0], infos, final_info={"final_reward": 1.0}
    )


def test_q_learning_bootstraps_over_allowed_next_actions_and_stops_at_the_end():
    agent = QLearning(1, 2, 2, lr=0.5, gamma=0.9)
    agent.q[0] = [[1.0, 0.0], [2.0, 4.0]]
    agent.learn(q_route(mask_at_depth_1=[1, 0]))
    # step 0: target = 0.5 + 0.9 * max(Q(s', allowed = {0})) = 0.5 + 0.9 * 2 = 2.3
    #         Q(s, 0) = 1 + 0.5 * (2.3 - 1) = 1.65  (s' read before its own update)
    # step 1: terminal, target = 1.0; Q(s', 0) = 2 + 0.5 * (1 - 2) = 1.5
    np.testing.assert_allclose(agent.q[0], [[1.65, 0.0], [1.5, 4.0]])


def test_q_learning_without_a_next_mask_allows_every_action():
    agent = QLearning(1, 2, 2, lr=0.5, gamma=0.9)
    agent.q[0] = [[1.0, 0.0], [2.0, 4.0]]
    agent.learn(q_route(mask_at_depth_1=None))
    # target = 0.5 + 0.9 * 4 = 4.1; Q(s, 0) = 1 + 0.5 * 3.1 = 2.55
    assert agent.q[0, 0, 0] == pytest.approx(2.55)


def test_epsilon_greedy_distribution_follows_eq_3_3():
    agent = QLearning(1, 1, 4, epsilon=0.3)
    agent.q[0, 0] = [1.0, 3.0, 3.0, 5.0]
    # action 3 is masked; 3 allowed, greedy tie {1, 2} broken at random:
    # P(1) = P(2) = 1/2 * 0.7 + 1/2 * 0.3 / 2 = 0.425, P(0) = 0.3 / 2 = 0.15
    np.testing.assert_allclose(agent.policy(0, 0, np.array([1, 1, 1, 0])), [0.15, 0.425, 0.425, 0])
    np.testing.assert_allclose(agent.policy(0, 0, np.array([0, 1, 0, 0])), [0, 1, 0, 0])


def test_epsilon_anneals_linearly_over_learned_routes():
    agent = QLearning(1, 1, 2, epsilon=0.5, epsilon_final=0.1, epsilon_decay_episodes=4)
    for _ in range(2):
        agent.learn(one_step(0, 1.0))
    assert agent.current_epsilon == pytest.approx(0.3)
    agent.learn_batch([one_step(0, 1.0)] * 5)
    assert agent.current_epsilon == pytest.approx(0.1)


def two_step(first: int, final: float) -> Episode:
    """A route of two decisions, ``first`` then action 0, paying only ``final`` at the end."""
    return Episode(
        [obs(depth=0), obs(depth=1)], [first, 0], [0.0, final], final_info={"final_reward": final}
    )


def test_q_learning_bootstrap_gives_every_action_before_the_last_depth_one_target():
    """The table's next state ``(t, d + 1)`` is the same whichever module was chosen, so
    eq. 3.2 cannot tell the depth-0 actions apart even when one always leads to a reward of +1
    and the other to -1; the Monte Carlo target can (docs/results.md)."""
    routes = [two_step(first, 1.0 if first == 0 else -1.0) for first in (0, 1) * 200]
    bootstrap, returns = QLearning(1, 2, 2, lr=0.1), QLearning(1, 2, 2, lr=0.1, target="return")
    bootstrap.learn_batch(routes)
    returns.learn_batch(routes)
    # Q(d1, 0) averages the alternating +1 / -1; both depth-0 actions chase that one value.
    assert abs(bootstrap.q[0, 0, 0] - bootstrap.q[0, 0, 1]) < 0.1
    np.testing.assert_allclose(returns.q[0, 0], [1.0, -1.0], atol=1e-6)


def test_q_learning_return_target_moves_each_value_towards_its_return():
    agent = QLearning(1, 2, 2, lr=0.5, gamma=0.9, target="return")
    agent.q[0] = [[1.0, 0.0], [2.0, 4.0]]
    agent.learn(q_route(mask_at_depth_1=[1, 0]))
    # returns: R_0 = 1 (final) + 0.5 + 0.9 * 0 = 1.5, R_1 = 1 (final) + 0 = 1 (the last reward
    # 1.0 is the final reward); Q(s, 0) = 1 + 0.5 * 0.5 = 1.25, Q(s', 0) = 2 + 0.5 * -1 = 1.5
    np.testing.assert_allclose(agent.q[0], [[1.25, 0.0], [1.5, 4.0]])


def test_q_learning_learn_batch_is_eq_3_2_route_by_route():
    """The compiled loop against eq. 3.2 written with NumPy, one route at a time."""
    routes = random_routes(seed=7, count=80)
    expected = QLearning(2, 3, 4, lr=0.3, gamma=0.8, initial_value=0.2)
    for route in routes:
        tasks, depths, actions, masks = expected.route_decisions(route)
        targets = bootstrapped_targets(expected.q, tasks, depths, masks, route.rewards, 0.8)
        taken = expected.q[tasks, depths, actions]
        expected.q[tasks, depths, actions] = taken + 0.3 * (targets - taken)
    for batch in (routes, as_batch(routes)):
        agent = QLearning(2, 3, 4, lr=0.3, gamma=0.8, initial_value=0.2)
        agent.learn_batch(batch[:33])
        agent.learn_batch(batch[33:])
        np.testing.assert_array_equal(agent.q, expected.q)
        assert agent.episodes_seen == 80
    assert len(np.unique(expected.q)) > 10


def test_q_learning_return_target_batches_equal_sequential_learn():
    routes = random_routes(seed=5, count=60)
    one_by_one = QLearning(2, 3, 4, lr=0.3, target="return")
    for route in routes:
        one_by_one.learn(route)
    for batch in (routes, as_batch(routes)):
        batched = QLearning(2, 3, 4, lr=0.3, target="return")
        batched.learn_batch(batch[:17])
        batched.learn_batch(batch[17:])
        np.testing.assert_allclose(batched.q, one_by_one.q, rtol=0, atol=1e-12)
        assert batched.episodes_seen == one_by_one.episodes_seen == 60
    assert np.abs(one_by_one.q).max() > 0


def test_q_learning_initial_value_and_target_are_checked_and_saved(tmp_path):
    agent = QLearning(2, 3, 4, initial_value=1.5, target="return", seed=0)
    assert (agent.q == 1.5).all()
    agent.learn(one_step(action=1, reward=-1.0))
    save(agent, tmp_path / "q.pt")
    restored = load(tmp_path / "q.pt")
    assert restored.target == "return" and restored.initial_value == 1.5
    np.testing.assert_array_equal(restored.q, agent.q)
    with pytest.raises(ValueError, match="target must be one of"):
        QLearning(1, 1, 2, target="monte-carlo")


# ---------------------------------------------------------------------- advantage learning


def test_advantage_learning_follows_eq_7_1_and_7_2():
    agent = AdvantageLearning(1, 1, 2, lr=0.5)
    agent.learn(one_step(action=1, reward=2.0))
    # R - V = 2; V = 0 + 0.5 * 2 = 1; A(1) = 0 + 0.5 * (2 - 0) = 1  (V before eq. 7.1's update)
    assert agent.v[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(agent.a[0, 0], [0.0, 1.0])
    agent.learn(one_step(action=1, reward=0.0))
    # R - V = -1; V = 1 - 0.5 = 0.5; A(1) = 1 + 0.5 * (-1 - 1) = 0
    agent.learn(one_step(action=0, reward=1.0))
    # R - V = 0.5; V = 0.5 + 0.25 = 0.75; A(0) = 0 + 0.5 * 0.5 = 0.25
    assert agent.v[0, 0] == pytest.approx(0.75)
    np.testing.assert_allclose(agent.a[0, 0], [0.25, 0.0])


def test_advantage_learning_acts_greedily_on_the_advantage():
    agent = AdvantageLearning(1, 1, 3, epsilon=0.0)
    agent.v[0, 0] = 100.0
    agent.a[0, 0] = [0.0, 2.0, 1.0]
    assert agent.act(obs(), {"action_mask": np.ones(3)}) == 1
    assert agent.act(obs(), {"action_mask": np.array([1, 0, 1])}) == 2


# ---------------------------------------------------------------------- REINFORCE


def test_reinforce_step_is_return_times_grad_log_softmax():
    agent = Reinforce(1, 1, 2, lr=0.5)
    agent.learn(one_step(action=0, reward=2.0))
    # pi = [1/2, 1/2]; theta += 0.5 * 2 * ([1, 0] - [1/2, 1/2]) = [0.5, -0.5]
    np.testing.assert_allclose(agent.theta[0, 0], [0.5, -0.5])
    p0 = 1 / (1 + np.exp(-1.0))  # softmax([0.5, -0.5])[0]
    np.testing.assert_allclose(agent.policy(0, 0), [p0, 1 - p0])
    agent.learn(one_step(action=1, reward=-1.0))
    # theta += 0.5 * (-1) * ([0, 1] - [p0, 1 - p0]) = -0.5 * [-p0, p0] = [0.5 p0, -0.5 p0]
    # with p0 = 0.731059: theta = [0.865529, -0.865529]
    np.testing.assert_allclose(agent.theta[0, 0], [0.865529, -0.865529], atol=1e-6)


def test_reinforce_softmax_runs_over_allowed_actions_only():
    agent = Reinforce(1, 1, 3, lr=1.0)
    agent.learn(one_step(action=2, reward=1.0, mask=[1, 0, 1]))
    # pi = [1/2, 0, 1/2]; theta += 1 * ([0, 0, 1] - pi) = [-0.5, 0, 0.5]
    np.testing.assert_allclose(agent.theta[0, 0], [-0.5, 0.0, 0.5])


# ---------------------------------------------------------------------- WoLF-PHC


def test_wolf_phc_moves_fast_when_losing_and_slowly_when_winning():
    agent = WoLFPHC(1, 1, 2, lr=0.5, delta_win=0.1, delta_lose=0.3)
    agent.learn(one_step(action=0, reward=1.0))
    # Q = [0.5, 0]; C = 1, pibar = pi = [0.5, 0.5]; pi.Q = pibar.Q = 0.25: not winning
    # -> delta_lose: action 1 gives min(0.5, 0.3) to greedy action 0: pi = [0.8, 0.2]
    np.testing.assert_allclose(agent.q[0, 0], [0.5, 0.0])
    np.testing.assert_allclose(agent.pi[0, 0], [0.8, 0.2])
    agent.learn(one_step(action=1, reward=1.0))
    # Q = [0.5, 0.5]; C = 2, pibar = [0.5, 0.5] + ([0.8, 0.2] - [0.5, 0.5]) / 2 = [0.65, 0.35]
    # pi.Q = pibar.Q = 0.5: losing; greedy = 0 (lowest index on ties); action 1 gives
    # min(0.2, 0.3) = 0.2 (it cannot go below 0): pi = [1, 0]
    np.testing.assert_allclose(agent.pibar[0, 0], [0.65, 0.35])
    np.testing.assert_allclose(agent.pi[0, 0], [1.0, 0.0])
    agent.learn(one_step(action=0, reward=0.0))
    # Q = [0.5 + 0.5 * (0 - 0.5), 0.5] = [0.25, 0.5]; C = 3
    # pibar = [0.65, 0.35] + ([1, 0] - [0.65, 0.35]) / 3 = [0.7667, 0.2333]
    # pi.Q = 0.25 < pibar.Q = 0.3083: losing; greedy = 1: pi = [1 - 0.3, 0.3]
    np.testing.assert_allclose(agent.pibar[0, 0], [0.65 + 0.35 / 3, 0.35 - 0.35 / 3])
    np.testing.assert_allclose(agent.pi[0, 0], [0.7, 0.3])
    agent.learn(one_step(action=1, reward=1.0))
    # Q = [0.25, 0.5 + 0.5 * 0.5] = [0.25, 0.75]; C = 4
    # pibar = [0.7667, 0.2333] + ([0.7, 0.3] - [0.7667, 0.2333]) / 4 = [0.75, 0.25]
    # pi.Q = 0.7 * 0.25 + 0.3 * 0.75 = 0.4 > pibar.Q = 0.375: winning, delta_win = 0.1
    # pi = [0.7 - 0.1, 0.3 + 0.1]
    np.testing.assert_allclose(agent.q[0, 0], [0.25, 0.75])
    np.testing.assert_allclose(agent.pibar[0, 0], [0.75, 0.25])
    np.testing.assert_allclose(agent.pi[0, 0], [0.6, 0.4])
    assert agent.counts[0, 0] == 4


def test_wolf_phc_requires_delta_win_below_delta_lose():
    with pytest.raises(ValueError, match="delta_win < delta_lose"):
        WoLFPHC(1, 1, 2, delta_win=0.1, delta_lose=0.05)


# ---------------------------------------------------------------------- shared behaviour


def trained(cls, seed: int = 0, num_actions: int = 4, routes: int = 60, **kwargs):
    """An agent of ``cls`` that has learned to prefer action 0 in state (0, 0)."""
    agent = cls(2, 2, num_actions, seed=seed, **kwargs)
    for i in range(routes):
        action = i % num_actions
        agent.learn(one_step(action, 1.0 if action == 0 else -1.0))
    return agent


@pytest.mark.parametrize("cls", AGENTS)
def test_training_prefers_the_rewarded_action(cls):
    agent = trained(cls)
    assert np.argmax(agent.policy(0, 0)) == 0
    agent.greedy = True
    assert agent.act(obs(), {"action_mask": np.ones(4)}) == 0


@pytest.mark.parametrize("cls", AGENTS)
def test_masked_actions_are_never_chosen(cls):
    agent = trained(cls)
    mask = np.array([0, 1, 0, 1], dtype=np.int8)  # the preferred action 0 is masked
    single = [agent.act(obs(), {"action_mask": mask}) for _ in range(300)]
    batch = agent.act_batch(
        {"task": np.zeros(3000, dtype=np.int64), "depth": np.zeros(3000, dtype=np.int64)},
        np.tile(mask, (3000, 1)),
    )
    assert set(single) <= {1, 3} and set(batch.tolist()) <= {1, 3}
    agent.greedy = True
    assert agent.act(obs(), {"action_mask": mask}) in {1, 3}
    with pytest.raises(ValueError, match="no action is allowed"):
        agent.act(obs(), {"action_mask": np.zeros(4)})


@pytest.mark.parametrize("cls", AGENTS)
def test_greedy_mode_is_deterministic_and_draws_nothing(cls):
    agent = trained(cls)
    agent.greedy = True
    before = agent.rng.bit_generator.state
    actions = {agent.act(obs(), {"action_mask": np.ones(4)}) for _ in range(20)}
    batch = agent.act_batch(
        {"task": np.zeros(20, dtype=np.int64), "depth": np.zeros(20, dtype=np.int64)},
        np.ones((20, 4)),
    )
    assert actions == {0} and (batch == 0).all()
    assert agent.rng.bit_generator.state == before


@pytest.mark.parametrize("cls", AGENTS)
def test_act_and_act_batch_sample_the_policy(cls):
    agent = trained(cls, num_actions=3, routes=6, **({"epsilon": 0.3} if cls is WoLFPHC else {}))
    mask = np.array([1, 1, 1])
    expected = agent.policy(0, 0, mask)
    assert expected.min() > 0.02  # a distribution worth testing
    n = 4000
    single = np.bincount([agent.act(obs(), {"action_mask": mask}) for _ in range(n)], minlength=3)
    states = {"task": np.zeros(n, dtype=np.int64), "depth": np.zeros(n, dtype=np.int64)}
    batch = np.bincount(agent.act_batch(states, np.tile(mask, (n, 1))), minlength=3)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n)  # 4 standard errors
    np.testing.assert_array_less(np.abs(single / n - expected), tolerance)
    np.testing.assert_array_less(np.abs(batch / n - expected), tolerance)


def random_routes(seed: int, count: int = 40) -> list[Episode]:
    """Routes over 2 tasks and up to 3 depths, repeated states, masks on some decisions."""
    rng = np.random.default_rng(seed)
    routes = []
    for _ in range(count):
        task, length = int(rng.integers(2)), int(rng.integers(1, 4))
        masks = [np.array([1, 1, 1, int(d < 2)], dtype=np.int8) for d in range(length)]
        actions = [int(rng.choice(np.flatnonzero(m))) for m in masks]
        rewards = rng.normal(size=length).tolist()
        infos = [{"action_mask": m} for m in masks] if rng.random() < 0.7 else []
        final = {"final_reward": float(rng.choice([-1.0, 1.0]))}
        rewards[-1] += final["final_reward"]
        observations = [obs(task, d) for d in range(length)]
        routes.append(Episode(observations, actions, rewards, infos, final_info=final))
    return routes


def state_arrays(agent) -> dict:
    return {name: np.asarray(getattr(agent, name)).copy() for name in agent.state_names}


@pytest.mark.parametrize("cls", AGENTS)
def test_learn_batch_equals_sequential_learn(cls):
    routes = random_routes(seed=1)
    one_by_one, batched = cls(2, 3, 4, lr=0.3, seed=0), cls(2, 3, 4, lr=0.3, seed=0)
    for route in routes:
        one_by_one.learn(route)
    batched.learn_batch(routes[:25])
    batched.learn_batch(routes[25:])
    expected, got = state_arrays(one_by_one), state_arrays(batched)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-12, err_msg=name)
    untrained = state_arrays(cls(2, 3, 4))
    assert any(not np.array_equal(untrained[name], expected[name]) for name in expected)


def as_batch(routes: list[Episode], num_actions: int = 4) -> EpisodeBatch:
    """The routes as an :class:`EpisodeBatch` (padded; all actions allowed where a route's
    infos carry no mask, as :func:`agents.tabular.decision_masks` reads them)."""
    width = max(len(route) for route in routes)
    count = len(routes)
    batch = {
        "activation": np.zeros((count, width, 1), dtype=np.float32),
        "task": np.zeros((count, width), dtype=np.int64),
        "depth": np.zeros((count, width), dtype=np.int64),
        "action_mask": np.zeros((count, width, num_actions), dtype=np.int8),
        "actions": np.full((count, width), -1, dtype=np.int64),
        "rewards": np.zeros((count, width)),
    }
    for row, route in enumerate(routes):
        for i, observation in enumerate(route.observations):
            batch["activation"][row, i] = observation["activation"]
            batch["task"][row, i] = observation["task"]
            batch["depth"][row, i] = observation["depth"]
            info = route.infos[i] if route.infos else {}
            batch["action_mask"][row, i] = info.get("action_mask", np.ones(num_actions))
        batch["actions"][row, : len(route)] = route.actions
        batch["rewards"][row, : len(route)] = route.rewards
    lengths = np.array([len(route) for route in routes])
    final = {"final_reward": np.array([route.final_info["final_reward"] for route in routes])}
    return EpisodeBatch(**batch, lengths=lengths, final_info=final)


@pytest.mark.parametrize("cls", AGENTS)
def test_learn_batch_on_an_episode_batch_equals_sequential_learn(cls):
    """The array path (EpisodeBatch) gives exactly the tables of learning route by route."""
    routes = random_routes(seed=3, count=60)
    one_by_one, batched = cls(2, 3, 4, lr=0.3, seed=0), cls(2, 3, 4, lr=0.3, seed=0)
    for route in routes:
        one_by_one.learn(route)
    batch = as_batch(routes)
    batched.learn_batch(batch[:17])
    batched.learn_batch(batch[17:])
    expected, got = state_arrays(one_by_one), state_arrays(batched)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    untrained = state_arrays(cls(2, 3, 4))
    assert any(not np.array_equal(untrained[name], expected[name]) for name in expected)


def test_episode_batch_reads_back_as_the_episodes():
    routes = random_routes(seed=4, count=12)
    batch = as_batch(routes)
    assert len(batch) == 12 and len(batch[3:7]) == 4
    returns = batch.returns(gamma=0.9)
    for row, (route, got) in enumerate(zip(routes, batch, strict=True)):
        assert got.actions == route.actions and got.rewards == route.rewards
        assert [o["task"] for o in got.observations] == [o["task"] for o in route.observations]
        assert [o["depth"] for o in got.observations] == [o["depth"] for o in route.observations]
        assert all(type(o["task"]) is int for o in got.observations)
        assert got.final_info == route.final_info
        assert len(got.infos) == len(route) and got.infos[0]["action_mask"].shape == (4,)
        np.testing.assert_array_equal(returns[row, : len(route)], route.returns(0.9))
        assert not returns[row, len(route) :].any()
        assert batch.total_rewards()[row] == sum(route.rewards)
    assert batch[-1].actions == routes[-1].actions
    assert batch[5:][0].actions == routes[5].actions
    with pytest.raises(IndexError):
        batch[12]


def test_visit_index_counts_earlier_visits_of_the_same_state():
    states = np.random.default_rng(0).integers(0, 5, 200)
    seen: dict[int, int] = {}
    expected = []
    for state in states.tolist():
        expected.append(seen.get(state, 0))
        seen[state] = expected[-1] + 1
    np.testing.assert_array_equal(visit_index(states), expected)
    order, bounds = visit_order(states)
    groups = [order[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]
    assert [len(np.unique(states[group])) for group in groups] == [len(g) for g in groups]
    np.testing.assert_array_equal(np.sort(order), np.arange(200))
    for k, group in enumerate(groups):
        assert (np.diff(group) > 0).all() and (visit_index(states)[group] == k).all()
    # Distinct states (one route) are one group in their own order.
    assert visit_order(np.array([3, 7, 1]))[0] is None
    np.testing.assert_array_equal(visit_order(np.array([3, 7, 1]))[1], [0, 3])


@pytest.mark.parametrize(("count", "width"), [(1, 4), (20, 11), (64, 11), (300, 5), (100, 1)])
def test_sample_is_the_inverse_cdf_of_one_draw_per_row(count, width):
    """The rows' actions against np.cumsum and one rng.random(count) draw, exactly (the CDF
    is summed action by action for many rows)."""
    rng = np.random.default_rng(count)
    probabilities = rng.random((count, width)) ** 3
    probabilities[rng.random((count, width)) < 0.3] = 0.0
    probabilities[:, -1] += 1e-3
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    got = sample(np.random.default_rng(7), probabilities)
    cdf = np.cumsum(probabilities, axis=1)
    u = np.random.default_rng(7).random(count) * cdf[:, -1]
    expected = (cdf <= u[:, None]).sum(axis=1)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert (probabilities[np.arange(count), got] > 0).all()


@pytest.mark.parametrize("cls", AGENTS)
def test_seeds_fix_the_actions(cls):
    def actions(seed):
        agent = cls(1, 1, 5, seed=seed)  # untrained: every agent starts uniform
        return [agent.act(obs(), {"action_mask": np.ones(5)}) for _ in range(50)]

    assert actions(3) == actions(3)
    assert actions(3) != actions(4)


@pytest.mark.parametrize("cls", AGENTS)
def test_save_load_round_trip_continues_the_same_stream(cls, tmp_path):
    agent = trained(cls, seed=7)
    path = tmp_path / "agent.pt"
    save(agent, path)
    restored = load(path)
    assert type(restored) is cls and restored.config == agent.config
    for name, value in state_arrays(agent).items():
        np.testing.assert_array_equal(np.asarray(getattr(restored, name)), value, err_msg=name)
    states = {"task": np.array([0, 1, 0]), "depth": np.array([0, 1, 1])}
    masks = np.ones((3, 4))
    assert [agent.act(obs(), {"action_mask": np.ones(4)}) for _ in range(30)] == [
        restored.act(obs(), {"action_mask": np.ones(4)}) for _ in range(30)
    ]
    np.testing.assert_array_equal(agent.act_batch(states, masks), restored.act_batch(states, masks))
    # learning goes on identically too
    route = random_routes(seed=2, count=1)[0]
    agent.learn(route)
    restored.learn(route)
    for name, value in state_arrays(agent).items():
        np.testing.assert_array_equal(np.asarray(getattr(restored, name)), value, err_msg=name)


@pytest.mark.parametrize("cls", AGENTS)
def test_states_outside_the_table_raise(cls):
    agent = cls(2, 3, 4)
    with pytest.raises(ValueError, match="table of shape"):
        agent.act(obs(task=0, depth=3), {"action_mask": np.ones(4)})
    with pytest.raises(ValueError, match="table of shape"):
        agent.act(obs(task=-1, depth=0), {"action_mask": np.ones(4)})
    with pytest.raises(ValueError, match="table of shape"):
        agent.learn(one_step(action=4, reward=1.0))


# ---------------------------------------------------------------------- exploratory actions


def test_exploratory_means_not_a_greedy_action_ties_included():
    """``000`` 7.4.2: an action is exploratory when taken non-greedily."""
    obs = {"task": np.array([0, 0, 0, 1]), "depth": np.array([1, 1, 1, 1])}
    masks = np.ones((4, 3))
    masks[2, 1] = 0  # row 2: the best action is masked, action 2 is the best allowed
    actions = np.array([1, 0, 2, 2])
    expected = [False, True, False, False]  # row 3: task 1 is all tied, so greedy

    q = QLearning(2, 2, 3, seed=0)
    q.q[0, 1] = [0.0, 1.0, 0.5]
    advantage = AdvantageLearning(2, 2, 3, seed=0)
    advantage.a[0, 1] = [0.0, 1.0, 0.5]
    wpl = WPL(2, 2, 3, seed=0)
    wpl.pi[0, 1] = [0.2, 0.5, 0.3]
    reinforce = Reinforce(2, 2, 3, seed=0)
    reinforce.theta[0, 1] = [0.0, 1.0, 0.5]
    for agent in (q, advantage, wpl, reinforce):
        assert agent.exploratory(obs, masks, actions).tolist() == expected, type(agent).__name__
    assert WoLFPHC(2, 2, 3, seed=0).exploratory(obs, masks, actions) is None
