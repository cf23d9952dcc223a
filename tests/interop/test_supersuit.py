"""SuperSuit over the game: ``pettingzoo_env_to_vec_env_v1`` (one sub-environment per
router, parameter sharing style) and ``concat_vec_envs_v1`` (copies side by side, here in
process with ``num_cpus=0``), as PettingZoo's SuperSuit + Stable-Baselines3 tutorials use them.

``pettingzoo_env_to_vec_env_v1`` needs a fixed agent set: it asserts after every step that
``agents == possible_agents`` (unless built with ``black_death``). The game's default keeps
an agent whose route ended early (an invalid action) until the round ends, its actions
ignored and its reward 0, so unmasked random actions run; ``leave_early=True`` does not.

SuperSuit 3.11.0 limitation, pinned below: at a round's end it merges the next round's reset
info over the final info (``{**final_info, **reset_info}``); our infos have the same keys at
reset and at the end, so the finished routes' infos are replaced by the new round's and only
``terminal_observation`` is added. The reward still carries the outcome (+1 / -1); read the
route-end infos from the step before, or from the game itself if needed.
"""

from __future__ import annotations

import numpy as np
import pytest

ss = pytest.importorskip("supersuit")

from gymnasium.vector.utils import batch_space  # noqa: E402

from routing_env import routing_game_v0  # noqa: E402

from ._contract import FLAT_DIM, MAX_DEPTH, NUM_ACTIONS, NUM_TASKS, check_info  # noqa: E402


def _game(**kwargs) -> routing_game_v0.RoutingGame:
    return routing_game_v0.parallel_env(dataset="synthetic-mtl", **kwargs)


def test_pettingzoo_env_to_vec_env_unmasked_random_actions() -> None:
    venv = ss.pettingzoo_env_to_vec_env_v1(_game())
    assert venv.num_envs == NUM_TASKS and venv.action_space.n == NUM_ACTIONS
    batched = batch_space(venv.observation_space, venv.num_envs)
    obs, infos = venv.reset(seed=0)
    assert batched.contains(obs) and len(infos) == NUM_TASKS
    for info in infos:
        check_info(info)
    rng = np.random.default_rng(0)
    round_return = np.zeros(NUM_TASKS)
    ended = np.zeros(NUM_TASKS, dtype=bool)  # routers whose route ended earlier this round
    rounds = invalid = 0
    for step in range(1, 91):
        actions = rng.integers(NUM_ACTIONS, size=NUM_TASKS)  # unmasked
        obs, rewards, terminations, truncations, infos = venv.step(actions)
        assert batched.contains(obs) and rewards.dtype == np.float32
        assert not truncations.any()
        # Fixed agent set: all routers terminate together, after max_depth steps (layered).
        round_over = step % MAX_DEPTH == 0
        assert (terminations == round_over).all()
        round_return += rewards
        # A router whose route ended early stays, its actions ignored, its reward 0.
        assert (rewards[ended] == 0).all()
        for info in infos:
            check_info(info, python_scalars=True)
        if round_over:
            rounds += 1
            # One final reward per router and round, +1 / -1, paid once: a router whose
            # route ended early gets 0 for the rest of the round.
            assert set(np.abs(round_return)) == {1.0}
            round_return[:] = 0
            ended[:] = False
            for info in infos:
                assert "terminal_observation" in info
                # SuperSuit 3.11.0: the next round's reset info replaced the final one.
                assert not info["route_done"]
            assert (obs["depth"] == 0).all()
        else:
            done = np.array([info["route_done"] for info in infos])
            assert (done >= ended).all(), "a finished route came back to life"
            # A route ends before the round only on an invalid action (layered routing),
            # paid -1 at that step; its info and observation stay its final ones.
            for i in np.flatnonzero(done & ~ended):
                assert infos[i]["invalid_action"] and rewards[i] == -1.0
                invalid += 1
            ended |= done
    assert rounds == 30 and invalid > 0


def test_leave_early_needs_black_death() -> None:
    """With ``leave_early=True`` a router leaves ``agents`` at its invalid action, which
    ``pettingzoo_env_to_vec_env_v1`` refuses: the reason the fixed agent set is the default."""
    venv = ss.pettingzoo_env_to_vec_env_v1(_game(leave_early=True))
    venv.reset(seed=0)
    actions = np.zeros(NUM_TASKS, dtype=np.int64)
    actions[0] = NUM_ACTIONS - 1  # PASS, masked at depth 0: router_0's route ends
    with pytest.raises(AssertionError, match="black_death"):
        venv.step(actions)


def test_masked_random_actions_from_the_observation() -> None:
    """``flatten_observation`` + ``mask_in_observation``: the batched observation carries
    each router's mask; drawing from it never takes a masked action."""
    venv = ss.pettingzoo_env_to_vec_env_v1(
        _game(flatten_observation=True, mask_in_observation=True)
    )
    obs, _ = venv.reset(seed=0)
    assert obs["observation"].shape == (NUM_TASKS, FLAT_DIM)
    assert obs["action_mask"].shape == (NUM_TASKS, NUM_ACTIONS)
    venv.action_space.seed(0)
    for _ in range(30):
        actions = np.array([venv.action_space.sample(mask=m) for m in obs["action_mask"]])
        obs, _, _, _, infos = venv.step(actions)
        assert not any(info["invalid_action"] for info in infos)


def test_concat_vec_envs_in_process() -> None:
    """``concat_vec_envs_v1(..., num_cpus=0)``: copies stepped in this process. SuperSuit
    copies the game with cloudpickle, so each copy trains its own network."""
    game = _game(flatten_observation=True)
    venv = ss.concat_vec_envs_v1(
        ss.pettingzoo_env_to_vec_env_v1(game), 2, num_cpus=0, base_class="gymnasium"
    )
    assert venv.num_envs == 2 * NUM_TASKS
    networks = {id(sub.par_env.network) for sub in venv.vec_envs}
    assert len(networks) == 2 and id(game.network) not in networks
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (2 * NUM_TASKS, FLAT_DIM) and len(infos) == 2 * NUM_TASKS
    rng = np.random.default_rng(0)
    for step in range(1, 10):
        obs, rewards, terminations, _, infos = venv.step(rng.integers(NUM_ACTIONS, size=12))
        assert obs.shape == (2 * NUM_TASKS, FLAT_DIM)
        assert (terminations == (step % MAX_DEPTH == 0)).all()
        for info in infos:
            check_info(info)


def test_concat_vec_envs_for_stable_baselines3() -> None:
    """The PettingZoo tutorial's recipe: parameter-shared SB3 PPO on the game's routers.

    SuperSuit 3.11.0 bug: its SB3 wrapper's ``seed`` calls ``ConcatVecEnv.seed``, which
    Gymnasium 1.x vector envs no longer have, so ``PPO(..., seed=s)`` raises AttributeError;
    seed with ``set_random_seed`` and ``venv.reset(seed=s)`` instead."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.utils import set_random_seed

    venv = ss.concat_vec_envs_v1(
        ss.pettingzoo_env_to_vec_env_v1(_game(flatten_observation=True)),
        1,
        num_cpus=0,
        base_class="stable_baselines3",
    )
    assert venv.num_envs == NUM_TASKS
    with pytest.raises(AttributeError, match="seed"):
        sb3.PPO("MlpPolicy", venv, seed=0)
    set_random_seed(0)
    model = sb3.PPO("MlpPolicy", venv, n_steps=24, batch_size=36, n_epochs=1)
    model.learn(2 * 24 * NUM_TASKS)
    assert model.num_timesteps == 2 * 24 * NUM_TASKS
