"""Stable-Baselines3 models as routers, and SB3 callbacks that measure them.

* :class:`SB3Router` gives an SB3 model the ``act(obs, info)`` / ``greedy`` protocol of
  :class:`~agents.base.Agent`: the one boundary to SB3. The entry points of runs
  (:func:`agents.evaluate`, :func:`agents.pretrain_modules`,
  :func:`routing_env.experiments.nonstationarity.measure_nonstationarity`) wrap a bare SB3
  model in it once (:func:`agents.training.as_router`), so the rest measures SB3 routers with
  the same code as the others.
* :class:`RouterEvalCallback` evaluates the router on a test env every ``eval_every`` steps
  during ``model.learn``: learning curves in the format of :func:`agents.train`'s history.
* :class:`ReplayStalenessCallback` measures what module updates do to the transitions held in
  an off-policy agent's replay buffer (``000`` section 3.1.3.3).

The batched env SB3 trains on is an environment wrapper,
:mod:`routing_env.wrappers.sb3_vec_env`; :class:`SB3VecEnv` and :func:`make_vec_env` are
importable from here too. This is the only module of the package that imports SB3
(``pip install 'routing-env[sb3]'``); ``import agents`` works without it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy

from agents.base import Agent, Episode, route_path
from agents.evaluation import evaluate_router
from routing_env.env import RoutingEnv
from routing_env.wrappers.sb3_vec_env import SB3VecEnv, make_vec_env

__all__ = [
    "ReplayStalenessCallback",
    "RouterEvalCallback",
    "SB3Router",
    "SB3VecEnv",
    "make_vec_env",
]


class SB3Router(Agent):
    """An SB3 model with the router protocol of :class:`~agents.base.Agent`.

    :meth:`act` calls ``model.predict`` with ``deterministic=self.greedy``, so
    :func:`agents.evaluate` (which sets ``greedy``) evaluates the model's deterministic policy.
    Models whose ``predict`` takes ``action_masks`` (sb3-contrib's ``MaskablePPO``) get the
    mask of ``info["action_mask"]``; the others may choose a masked action, which the env
    handles by its ``invalid_action`` rule (by default, a wrong prediction).

    The model learns with its own ``model.learn``, not through :func:`agents.train`:
    :meth:`learn` raises. Sampling (``greedy=False``) uses SB3's random streams (torch's
    global generator), not ``self.rng``.

    Args:
        model: a trained (or training) SB3 model (``PPO``, ``A2C``, ``DQN``, ``MaskablePPO``...),
            or an SB3 policy (``model.policy``).
        seed: kept for the :class:`~agents.base.Agent` interface.
    """

    def __init__(self, model: BaseAlgorithm | BasePolicy, seed: int | None = None) -> None:
        if not isinstance(model, BaseAlgorithm | BasePolicy):
            raise TypeError(
                f"expected a Stable-Baselines3 model or policy, got {type(model).__name__}"
            )
        super().__init__(seed)
        self.model = model
        self.masked = "action_masks" in inspect.signature(model.predict).parameters

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """The model's action for one observation (deterministic when ``greedy``)."""
        mask = np.asarray(info["action_mask"]).astype(bool)
        return int(
            self.act_batch(
                {key: np.asarray(value)[None] for key, value in obs.items()}, mask[None]
            )[0]
        )

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """The model's actions for a batch of observations (a dict of stacked arrays)."""
        kwargs: dict[str, Any] = {}
        if self.masked:
            kwargs["action_masks"] = np.asarray(masks).astype(bool)
        actions, _ = self.model.predict(dict(obs), deterministic=self.greedy, **kwargs)
        return np.asarray(actions, dtype=np.int64).reshape(len(masks))

    def greedy_batchable(self) -> bool:
        """``True``: greedy mode is ``predict(deterministic=True)``, one row per state, with no
        state carried between calls."""
        return True

    def learn(self, episode: Episode) -> None:
        """Not supported: train the model with ``model.learn(total_timesteps)``."""
        raise TypeError(_LEARN_WITH_SB3)

    def frozen_copy(self) -> SB3Router:
        """A router on a copy of the model's policy network, which later training leaves
        unchanged (the snapshot of :class:`routing_env.metrics.ReturnDriftProbe`)."""
        policy = self.model.policy if isinstance(self.model, BaseAlgorithm) else self.model
        return SB3Router(_copy_sb3_policy(policy))


def _copy_sb3_policy(policy: BasePolicy) -> BasePolicy:
    """A copy of an SB3 policy network, rebuilt from its constructor parameters and weights
    as SB3's own ``save`` does: a policy may hold tensors from its last forward pass, which
    ``copy.deepcopy`` refuses."""
    fresh = type(policy)(**policy._get_constructor_parameters())
    fresh.load_state_dict(policy.state_dict())
    fresh.set_training_mode(False)
    return fresh.to(policy.device)


_LEARN_WITH_SB3 = (
    "an SB3 router learns with model.learn(total_timesteps) on the env "
    "(routing_env.wrappers.sb3_vec_env.make_vec_env for batched routes), not through "
    "agents.train"
)


class RouterEvalCallback(BaseCallback):
    """Evaluate the router with :func:`agents.evaluate` every ``eval_every`` environment steps.

    ``history`` holds per evaluation ``timesteps`` (decisions taken so far, all
    sub-environments), ``test_accuracy``, ``route_entropy``, ``modules_used``,
    ``per_task_accuracy`` and ``seconds`` (training time so far, evaluations excluded); one
    more evaluation runs when training ends. ``history["final"]`` is the last one.

    Args:
        eval_env: a single-sample test env, usually ``RoutingEnv(split="test",
            network=<the training env's network>)``.
        eval_every: environment steps (decisions, summed over sub-environments) between
            evaluations.
        episodes: routes per evaluation (default: the whole split; see :func:`agents.evaluate`).
        verbose: SB3 verbosity; 1 prints every evaluation.
    """

    def __init__(
        self, eval_env: Any, eval_every: int, episodes: int | None = None, verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        if eval_every < 1:
            raise ValueError(f"eval_every must be positive, got {eval_every}")
        self.eval_env = eval_env
        self.eval_every = int(eval_every)
        self.episodes = episodes
        self.history: dict[str, Any] = {
            "timesteps": [],
            "test_accuracy": [],
            "route_entropy": [],
            "modules_used": [],
            "per_task_accuracy": [],
            "seconds": [],
        }
        self._next = self.eval_every
        self._start = 0.0
        self._evaluating = 0.0
        self._router: SB3Router | None = None

    def _on_training_start(self) -> None:
        self._router = SB3Router(self.model)
        self._start = time.perf_counter()
        self._evaluating = 0.0
        self._next = self.num_timesteps + self.eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._evaluate()
            while self._next <= self.num_timesteps:
                self._next += self.eval_every
        return True

    def _on_training_end(self) -> None:
        if not self.history["timesteps"] or self.history["timesteps"][-1] != self.num_timesteps:
            self._evaluate()
        self.history["final"] = {
            key: values[-1] for key, values in self.history.items() if key != "final"
        }

    def _evaluate(self) -> None:
        began = time.perf_counter()
        result = evaluate_router(self._router, self.eval_env, self.episodes)
        self._evaluating += time.perf_counter() - began
        history = self.history
        history["timesteps"].append(self.num_timesteps)
        for key in ("route_entropy", "modules_used", "per_task_accuracy"):
            history[key].append(result[key])
        history["test_accuracy"].append(result["accuracy"])
        history["seconds"].append(time.perf_counter() - self._start - self._evaluating)
        if self.verbose:
            print(f"{self.num_timesteps:>9} steps  test accuracy {result['accuracy']:.3f}")


class ReplayStalenessCallback(BaseCallback):
    """How stale the finished routes in an off-policy agent's replay buffer are.

    A replayed transition ``(s, a, r, s')`` was recorded under the modules of its time. In a
    routing env the modules train on every batch of routes, so the same sample routed the same
    way later reaches a different activation and may get a different reward: the buffer holds
    transitions of an MDP that no longer exists (``000`` section 3.1.3.3). This callback
    tracks the route-ending transitions in the buffer (their sample, path, reward, final
    activation and the network's update count when stored) and, every ``check_every`` steps,
    routes up to ``sample_size`` of them again under the current modules (frozen: the check
    does not train them) and records in ``history``:

    * ``timesteps``; ``age``: mean module updates since the buffered routes were stored;
    * ``reward_changed``: share of them whose final reward would differ now;
    * ``activation_drift``: mean ``|h_then - h_now| / |h_now|`` of their final activation (the
      route's output logits);
    * ``buffered_routes``: route ends currently in the buffer.

    Args:
        check_every: environment steps between checks.
        sample_size: buffered route ends routed again per check.
        seed: seed of the draw of those routes.
        verbose: SB3 verbosity.
    """

    def __init__(
        self, check_every: int, sample_size: int = 500, seed: int = 0, verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        self.check_every = int(check_every)
        self.sample_size = int(sample_size)
        self.rng = np.random.default_rng(seed)
        self.history: dict[str, list[float]] = {
            "timesteps": [],
            "age": [],
            "reward_changed": [],
            "activation_drift": [],
            "buffered_routes": [],
        }
        # Buffer slot -> the route ends stored in it: (sample, path, reward, activation, updates)
        self._slots: dict[int, list[tuple[int, tuple[int, ...], float, np.ndarray, int]]] = {}
        self._next = self.check_every
        self._probe: RoutingEnv | None = None

    def _on_training_start(self) -> None:
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is None:
            raise TypeError("ReplayStalenessCallback needs an off-policy model (DQN, SAC, ...)")
        network = self.training_env.get_attr("network")[0]
        dataset = self.training_env.get_attr("dataset")[0]
        reward = self.training_env.get_attr("reward_kind")[0]
        # A frozen view of the training split through the same (live) modules.
        self._probe = RoutingEnv(
            dataset, split="train", network=network, train_modules=False, reward=reward
        )
        self._next = self.num_timesteps + self.check_every

    def _on_step(self) -> bool:
        # on_step runs after env.step and before the transition is added at buffer.pos.
        slot = int(self.model.replay_buffer.pos)
        infos = self.locals["infos"]
        dones = self.locals["dones"]
        updates = int(self._probe.network.num_updates)
        ends = []
        for i in np.flatnonzero(dones).tolist():
            info = infos[i]
            activation = np.asarray(info["terminal_observation"]["activation"], dtype=np.float64)
            # The final reward alone: the probe pays no collaboration reward.
            reward = float(info["final_reward"])
            ends.append(
                (int(info["sample_index"]), route_path(info), reward, activation, updates)
            )
        if ends:
            self._slots[slot] = ends
        else:
            self._slots.pop(slot, None)
        if self.num_timesteps >= self._next:
            self.check()
            while self._next <= self.num_timesteps:
                self._next += self.check_every
        return True

    def check(self) -> dict[str, float]:
        """Route a sample of the buffered route ends again now; append and return the figures."""
        stored = [end for ends in self._slots.values() for end in ends]
        history = self.history
        history["timesteps"].append(self.num_timesteps)
        history["buffered_routes"].append(len(stored))
        if not stored:
            for key in ("age", "reward_changed", "activation_drift"):
                history[key].append(float("nan"))
            return {key: values[-1] for key, values in history.items()}
        count = min(self.sample_size, len(stored))
        chosen = self.rng.choice(len(stored), size=count, replace=False)
        now_updates = self._probe.network.num_updates
        ages, changed, drifts = [], [], []
        for k in chosen.tolist():
            sample, path, reward, activation, updates = stored[k]
            new_reward, new_activation = _replay_route(self._probe, sample, path)
            ages.append(now_updates - updates)
            changed.append(new_reward != reward)
            scale = max(float(np.linalg.norm(new_activation)), 1e-12)
            drifts.append(float(np.linalg.norm(activation - new_activation)) / scale)
        history["age"].append(float(np.mean(ages)))
        history["reward_changed"].append(float(np.mean(changed)))
        history["activation_drift"].append(float(np.mean(drifts)))
        if self.verbose:
            print(
                f"{self.num_timesteps:>9} steps  buffered routes {len(stored)}  age "
                f"{history['age'][-1]:.0f} updates  reward changed "
                f"{history['reward_changed'][-1]:.1%}"
            )
        return {key: values[-1] for key, values in history.items()}


def _replay_route(env: RoutingEnv, sample: int, path: Iterable[int]) -> tuple[float, np.ndarray]:
    """Final reward and final activation of routing ``sample`` along ``path`` in ``env``."""
    env.reset(options={"sample_index": sample})
    total = 0.0
    obs: dict[str, Any] = {}
    for action in path:
        obs, reward, terminated, _, _ = env.step(action)
        total += float(reward)
        if terminated:
            break
    return total, np.asarray(obs["activation"], dtype=np.float64)
