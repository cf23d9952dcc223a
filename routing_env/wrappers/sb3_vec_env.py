"""The batched routing env as a Stable-Baselines3 ``VecEnv``.

The single-sample :class:`~routing_env.env.RoutingEnv` is already a Gymnasium env that SB3
accepts as it is (``MultiInputPolicy`` on its ``Dict`` observation, ``action_masks()`` for
sb3-contrib's ``MaskablePPO``), so ``PPO("MultiInputPolicy", env)`` works through SB3's own
``DummyVecEnv``, one forward pass per sub-environment. :class:`SB3VecEnv` presents a
:class:`~routing_env.vector.RoutingVectorEnv` (or any Gymnasium vector env with same-step
autoreset and ``final_obs`` / ``final_info``) as an SB3 ``VecEnv`` instead, so SB3 trains on
batched routes: one grouped module computation per step for all sub-environments.
:func:`make_vec_env` builds that stack (vector env, adapter, ``VecMonitor``) from the env
keywords.

Needs Stable-Baselines3 (``pip install 'routing-env[sb3]'``); ``import routing_env`` does not
import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from routing_env.vector import RoutingVectorEnv

__all__ = ["SB3VecEnv", "make_vec_env"]


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
