"""Stable-Baselines3 agents as routers.

The single-sample :class:`~routing_env.env.RoutingEnv` is already a Gymnasium env that SB3
accepts as it is (``MultiInputPolicy`` on its ``Dict`` observation, ``action_masks()`` for
sb3-contrib's ``MaskablePPO``), so ``PPO("MultiInputPolicy", env)`` works through SB3's own
``DummyVecEnv``. This module adds what SB3 lacks for the batched form and for comparing with
the project's routers:

* :class:`SB3VecEnv` presents a :class:`~routing_env.vector.RoutingVectorEnv` (or any Gymnasium
  vector env with same-step autoreset and ``final_obs`` / ``final_info``) as an SB3 ``VecEnv``,
  so SB3 trains on batched routes: one grouped module computation per step for all
  sub-environments instead of one forward pass per sub-environment.
* :func:`make_vec_env` builds that stack (vector env, adapter, ``VecMonitor``) from the env
  keywords.
* :class:`SB3Router` gives an SB3 model the ``act(obs, info)`` / ``greedy`` protocol of
  :class:`~agents.base.Agent`, so :func:`agents.evaluate` measures SB3 routers with the same
  metrics as the others (``agents.evaluate`` also accepts a bare SB3 model and wraps it).
* :class:`RouterEvalCallback` evaluates the router on a test env every ``eval_every`` steps
  during ``model.learn``: learning curves in the format of :func:`agents.train`'s history.
* :class:`ReplayStalenessCallback` measures what module updates do to the transitions held in
  an off-policy agent's replay buffer (``000`` section 3.1.3.3).

This is the only module of the package that imports SB3 (``pip install 'routing-env[sb3]'``);
``import agents`` works without it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from agents.base import Agent, Episode, route_path
from routing_env.env import RoutingEnv
from routing_env.vector import RoutingVectorEnv

__all__ = [
    "ReplayStalenessCallback",
    "RouterEvalCallback",
    "SB3Router",
    "SB3VecEnv",
    "make_vec_env",
]


class SB3VecEnv(VecEnv):
    """A Gymnasium vector routing env presented as a Stable-Baselines3 ``VecEnv``.

    SB3's ``VecEnv`` differs from Gymnasium's ``VectorEnv`` in its return values: ``reset()``
    returns the observations only (the reset infos go to ``reset_infos``); ``step_wait()``
    returns observations, ``float32`` rewards, ``dones`` (terminated or truncated) and a list
    of one info dict per sub-environment. Both autoreset on the same step, so a step maps to a
    step: when sub-environment ``i`` finishes a route, ``infos[i]`` holds the finished route's
    last observation under ``"terminal_observation"`` (SB3's key), its end-of-route info
    (``correct``, ``loss``, ``prediction``, ``label``, ``task``, ``path``, ``sample_index``,
    ``final_reward``, ``invalid_action``) and ``"TimeLimit.truncated"``; the returned
    observation is already the next route's first.

    The sub-environments are not separate objects: they share one network, one sample
    stream and one set of attributes. So :meth:`get_attr` returns the vector env's attribute
    once per requested index, :meth:`set_attr` sets it for all of them (asking for a subset
    raises), and :meth:`env_method` calls a method of the vector env once and returns its result
    once per index, except ``"action_masks"``, which returns each sub-environment's own row
    (how sb3-contrib's ``get_action_masks`` reads the masks for ``MaskablePPO``).
    :meth:`action_masks` gives the whole ``(num_envs, num_actions)`` boolean array.

    Seeding: one stream feeds every sub-environment, so the next :meth:`reset` passes the
    first of the seeds set by :meth:`seed` (SB3 sets ``seed + i`` for sub-environment ``i``)
    to the vector env's ``reset(seed=...)``. Options set by :meth:`set_options` are passed
    likewise (the first sub-environment's dict; ``sample_index`` takes one index per
    sub-environment).

    Args:
        venv: the vector env, usually a :class:`~routing_env.vector.RoutingVectorEnv`
            (``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``). It
            must autoreset on the same step and report the finished routes in
            ``infos["final_obs"]`` / ``infos["final_info"]``.
    """

    def __init__(self, venv: VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.SAME_STEP.value):
            raise ValueError(
                "SB3VecEnv needs a vector env with same-step autoreset (SB3's convention), "
                f"but metadata['autoreset_mode'] is {mode!r}"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._masks = np.ones((self.num_envs, self.action_space.n), dtype=bool)

    # ------------------------------------------------------------------ SB3 VecEnv API

    def reset(self) -> dict[str, np.ndarray]:
        """Start a route in every sub-environment; returns the observations only."""
        options = self._options[0] or None
        obs, infos = self.venv.reset(seed=self._seeds[0], options=options)
        self._reset_seeds()
        self._reset_options()
        self._masks = np.asarray(infos["action_mask"]).astype(bool)
        starts = _rows(infos, np.arange(self.num_envs), self.num_envs)
        self.reset_infos = [starts[i] for i in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions; :meth:`step_wait` applies them (the step is synchronous)."""
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        """Apply the actions of :meth:`step_async`; finished routes restart at once."""
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions) first")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, infos = self.venv.step(actions)
        dones = np.logical_or(terminated, truncated)
        self._masks = np.asarray(infos["action_mask"]).astype(bool)
        step_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        finished = np.flatnonzero(dones)
        if len(finished):
            final_obs = infos["final_obs"]
            ends = _rows(infos["final_info"], finished, self.num_envs)
            starts = _rows(infos, finished, self.num_envs)
            for i in finished.tolist():
                info = dict(ends[i])
                info["terminal_observation"] = final_obs[i]
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                step_infos[i] = info
                self.reset_infos[i] = starts[i]
        return obs, np.asarray(rewards, dtype=np.float32), dones, step_infos

    def close(self) -> None:
        """Close the vector env."""
        self.venv.close()

    def action_masks(self) -> np.ndarray:
        """Boolean ``(num_envs, num_actions)`` mask of the allowed actions in the current states."""
        return self._masks.copy()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """The vector env's attribute ``attr_name``, once per sub-environment in ``indices``."""
        value = getattr(self._target(attr_name), attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set ``attr_name`` on the vector env; it is shared, so ``indices`` must cover all."""
        chosen = set(self._get_indices(indices))
        if chosen != set(range(self.num_envs)):
            raise ValueError(
                f"the sub-environments share their attributes: {attr_name!r} can only be set "
                f"for all {self.num_envs} of them, not for indices {sorted(chosen)}"
            )
        try:
            target = self._target(attr_name)
        except AttributeError:
            target = self.venv.unwrapped
        setattr(target, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call ``method_name``; ``"action_masks"`` gives each sub-environment's own mask row.

        Any other method is called once on the vector env (its sub-environments share their
        state) and its result is returned once per index.
        """
        chosen = list(self._get_indices(indices))
        if method_name == "action_masks":
            return [self._masks[i].copy() for i in chosen]
        result = getattr(self._target(method_name), method_name)(*method_args, **method_kwargs)
        return [result for _ in chosen]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """Always ``False``: the sub-environments are rows of one vector env, not wrapped envs."""
        return [False for _ in self._get_indices(indices)]

    def _target(self, name: str) -> Any:
        """The vector env, or its unwrapped form, whichever has ``name``."""
        for candidate in (self.venv, self.venv.unwrapped):
            if hasattr(candidate, name):
                return candidate
        raise AttributeError(f"the vector env has no attribute {name!r}")


def _rows(columns: Mapping[str, Any], rows: np.ndarray, count: int) -> dict[int, dict[str, Any]]:
    """Gymnasium's vector infos (arrays with ``_key`` masks) as one dict per row of ``rows``."""
    out: dict[int, dict[str, Any]] = {int(i): {} for i in rows}
    for key, column in columns.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        present = columns.get(f"_{key}")
        values = np.asarray(column) if not isinstance(column, np.ndarray) else column
        if len(values) != count:
            continue
        for i in rows.tolist():
            if present is None or present[i]:
                value = values[i]
                out[i][key] = value.item() if isinstance(value, np.generic) else value
    return out


def make_vec_env(
    dataset: Any = "digits-mtl", num_envs: int = 16, monitor: bool = True, **env_kwargs: Any
) -> VecEnv:
    """A :class:`~routing_env.vector.RoutingVectorEnv` ready for SB3's ``learn``.

    Args:
        dataset: the suite name, ``.npz`` path or dataset (as for ``RoutingEnv``).
        num_envs: routes in flight at once (SB3's ``n_envs``).
        monitor: wrap in SB3's ``VecMonitor`` so that SB3 logs episode returns and lengths
            (``rollout/ep_rew_mean``).
        **env_kwargs: the keywords of :class:`~routing_env.env.RoutingEnv` (``split``,
            ``routing``, ``num_modules``, ``dataset_options``, ``network``, ...).

    Returns:
        An SB3 ``VecEnv``; ``.unwrapped``-style access to the network is
        ``env.get_attr("network")[0]``.
    """
    venv = SB3VecEnv(RoutingVectorEnv(num_envs, dataset, **env_kwargs))
    return VecMonitor(venv) if monitor else venv


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
        model: a trained (or training) SB3 model (``PPO``, ``A2C``, ``DQN``, ``MaskablePPO``...).
        seed: kept for the :class:`~agents.base.Agent` interface.
    """

    def __init__(self, model: BaseAlgorithm, seed: int | None = None) -> None:
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

    def learn(self, episode: Episode) -> None:
        """Not supported: train the model with ``model.learn(total_timesteps)``."""
        raise TypeError(_LEARN_WITH_SB3)

    def frozen_copy(self) -> SB3Router:
        """A router on a copy of the model's policy network, which later training leaves
        unchanged (the snapshot of :class:`routing_env.metrics.ReturnDriftProbe`)."""
        return SB3Router(_copy_sb3_policy(getattr(self.model, "policy", self.model)))



def _copy_sb3_policy(policy: Any) -> Any:
    """A copy of an SB3 policy network, rebuilt from its constructor parameters and weights
    as SB3's own ``save`` does: a policy may hold tensors from its last forward pass, which
    ``copy.deepcopy`` refuses."""
    fresh = type(policy)(**policy._get_constructor_parameters())
    fresh.load_state_dict(policy.state_dict())
    fresh.set_training_mode(False)
    return fresh.to(policy.device)


_LEARN_WITH_SB3 = (
    "an SB3 router learns with model.learn(total_timesteps) on the env "
    "(agents.sb3.make_vec_env for batched routes), not through agents.train"
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

    def _on_training_start(self) -> None:
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
        # Imported here: agents.training imports this module lazily, for SB3 models.
        from agents.training import evaluate

        began = time.perf_counter()
        result = evaluate(self.model, self.eval_env, self.episodes)
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
