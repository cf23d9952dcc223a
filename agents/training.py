"""The entry points of runs: training a router, evaluating it, pretraining the modules.

:func:`train` routes one sample per episode, hands each finished route to the agent as an
:class:`~agents.base.Episode` and, every ``eval_every`` episodes, records metrics (an "epoch").
Given a Gymnasium vector env (:class:`~routing_env.vector.RoutingVectorEnv`) it routes
``num_envs`` samples at once: one ``act_batch`` per step, and ``learn_batch`` on the routes
that finished in that step, oldest sub-environment first, as an
:class:`~agents.base.EpisodeBatch` (a sequence of episodes kept as stacked arrays).
:func:`evaluate` routes every sample of a test environment once with the agent in greedy mode
(:func:`agents.evaluation.evaluate_router`). :func:`pretrain_modules` trains the modules under
a fixed router and freezes them: the pretrained-then-frozen control of the non-stationarity
benchmark.

The one boundary to Stable-Baselines3 is here: an entry point that takes a router accepts an
SB3 model too and wraps it once (:func:`as_router`, :class:`agents.sb3.SB3Router`).
:func:`train` alone refuses one: an SB3 model learns with its own ``learn``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv
from tqdm.auto import tqdm

from agents.base import Agent, EpisodeBatch
from agents.evaluation import (
    entropy,
    evaluate_router,
    report_exploration,
    route_statistics,
    run_episode,
    selection_entropy,
    squashes,
)
from agents.factory import make_agent
from agents.run_checkpoint import resume_run, save_run
from routing_env.metrics import evaluation_indices

# Names that moved to agents.evaluation and routing_env.metrics, still importable from here.
__all__ = [
    "as_router",
    "entropy",
    "evaluate",
    "evaluation_indices",
    "jsonable",
    "pretrain_modules",
    "route_statistics",
    "run_episode",
    "selection_entropy",
    "train",
    "write_results",
]


def as_router(agent: Agent | Any) -> Agent:
    """``agent`` as a router: itself if it is an :class:`~agents.base.Agent`, else the
    Stable-Baselines3 model wrapped once in :class:`agents.sb3.SB3Router`.

    The entry points that take a router (:func:`evaluate`, :func:`pretrain_modules`,
    :func:`routing_env.experiments.nonstationarity.measure_nonstationarity`) call it once, so
    that everything after them meets one protocol.

    Raises:
        TypeError: ``agent`` is neither (or Stable-Baselines3 is not installed).
    """
    if isinstance(agent, Agent):
        return agent
    try:
        # agents.sb3 needs Stable-Baselines3, an optional dependency: imported for its models only.
        from agents.sb3 import SB3Router
    except ImportError:
        raise TypeError(
            f"expected a router (agents.Agent) or a Stable-Baselines3 model, got "
            f"{type(agent).__name__} (and Stable-Baselines3 is not installed)"
        ) from None
    return SB3Router(agent)


def evaluate(
    agent: Agent | Any, env: Any, episodes: int | None = None, batched: bool = True
) -> dict[str, Any]:
    """:func:`~agents.evaluation.evaluate_router` of ``agent``, a router or a
    Stable-Baselines3 model (wrapped in :class:`agents.sb3.SB3Router`: its deterministic
    policy, masked for ``MaskablePPO``); ``batched=False`` routes the samples one by one."""
    return evaluate_router(as_router(agent), env, episodes, batched=batched)


def train(
    agent: Agent,
    env: Any,
    episodes: int,
    eval_env: Any | None = None,
    seed: int | None = 0,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    progress: bool = True,
    out_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> dict[str, Any]:
    """Train ``agent`` as the router of ``env`` for ``episodes`` routes.

    (One function on purpose, longer than the others: the loop reads top to bottom, the
    single-env and vector-env forms side by side with the epochs and checkpoints they share.)

    Args:
        agent: any :class:`~agents.base.Agent`; not a Stable-Baselines3 model, which learns
            with its own ``model.learn`` (:class:`agents.sb3.RouterEvalCallback` records its
            learning curves).
        env: a routing environment (Gymnasium API; ``env.unwrapped`` a ``RoutingEnv``), or a
            vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``, a
            :class:`~routing_env.vector.RoutingVectorEnv`): then each step calls
            ``agent.act_batch`` on all sub-environments, and the routes finished in a step
            go to ``agent.learn_batch`` together (in sub-environment order, split at epoch
            ends). Routes still running when ``episodes`` routes have finished are dropped;
            the modules have trained on every route finished by then (the env trains them),
            including any finished in the last step beyond ``episodes``.
        episodes: number of routes to train on.
        eval_env: optional test environment (usually ``split="test"`` sharing the network);
            evaluated greedily at the end of every epoch. A single-sample env, also when
            ``env`` is a vector env.
        seed: passed to the first ``env.reset`` (seeds the data order and, for a fresh
            network, the module initialisation).
        eval_every: episodes per epoch (default: ``episodes // 10``, at least 1).
        eval_episodes: routes per evaluation (default: the whole test split).
        progress: show a progress bar.
        out_dir: if given, ``results.json`` is written there.
        checkpoint_dir: a folder for the run's checkpoint (:mod:`agents.run_checkpoint`):
            written there every ``checkpoint_every`` routes, and when the folder already holds
            one (of this agent class, on this dataset, with these arguments), the run resumes
            from it and ends exactly as the uninterrupted run would.
        checkpoint_every: routes between checkpoints (default: one per epoch).

    Returns:
        The history: per epoch ``episode``, ``mean_reward`` and ``train_accuracy`` of the epoch's
        training routes, and with ``eval_env`` ``test_accuracy``, ``test_loss`` (the mean loss of
        the routes that made a prediction), ``per_task_accuracy``, ``route_entropy``,
        ``modules_used``, ``routing_map``; plus ``final`` (the last evaluation, or the last epoch's
        training statistics), ``episodes`` and ``seconds`` (and, with ``checkpoint_dir``,
        ``resumed_at``: the routes the run had done when it resumed, 0 for a fresh run).
    """
    if not isinstance(agent, Agent):
        raise TypeError(
            f"agents.train trains routers (agents.Agent), not a {type(agent).__name__}: "
            f"{_LEARN_WITH_SB3}"
        )
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    epoch_length = max(1, episodes // 10) if eval_every is None else int(eval_every)
    history: dict[str, Any] = {
        "episode": [],
        "mean_reward": [],
        "train_accuracy": [],
        "test_accuracy": [],
        "test_loss": [],
        "per_task_accuracy": [],
        "route_entropy": [],
        "modules_used": [],
        "routing_map": [],
    }
    vector = isinstance(env, VectorEnv)
    if vector:
        _check_vector_training(agent, eval_env)
    arguments = {
        "episodes": episodes,
        "seed": seed,
        "eval_every": epoch_length,
        "eval_episodes": eval_episodes,
        "num_envs": env.num_envs if vector else 1,
    }
    every = epoch_length if checkpoint_every is None else int(checkpoint_every)
    if every < 1:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    returns: list[float] = []
    hits: list[bool] = []
    number, loop_state, spent = 0, None, 0.0
    saved = resume_run(checkpoint_dir, agent, env, arguments)
    if saved is not None:
        number, spent, loop_state = int(saved["number"]), float(saved["seconds"]), saved["vector"]
        returns, hits = list(saved["returns"]), [bool(hit) for hit in saved["hits"]]
        history = saved["history"]
    resumed_at = number
    start = time.perf_counter() - spent
    bar = tqdm(
        total=episodes, initial=number, disable=not progress, unit="route", dynamic_ncols=True
    )

    def end_epoch(number: int) -> None:
        history["episode"].append(number)
        history["mean_reward"].append(float(np.mean(returns)))
        history["train_accuracy"].append(float(np.mean(hits)))
        returns.clear()
        hits.clear()
        if eval_env is not None:
            result = evaluate_router(agent, eval_env, eval_episodes)
            history["test_accuracy"].append(result["accuracy"])
            history["test_loss"].append(result["mean_loss"])
            for key in _EVALUATED:
                history[key].append(result[key])
            bar.set_postfix(test_acc=f"{result['accuracy']:.3f}")
        else:
            bar.set_postfix(train_acc=f"{history['train_accuracy'][-1]:.3f}")

    def checkpoint(number: int, vector_state: Any = None) -> None:
        loop = {
            "number": number,
            "returns": returns,
            "hits": hits,
            "history": history,
            "seconds": time.perf_counter() - start,
            "vector": vector_state,
        }
        save_run(checkpoint_dir, agent, env, arguments, loop)

    if vector:
        stream = _VectorRoutes(agent, env, episodes, seed, loop_state)
        for finished in stream:
            before = number
            while len(finished):
                room = min(epoch_length - number % epoch_length, episodes - number)
                if room >= len(finished):  # the whole batch fits in the epoch: no slicing
                    part, finished = finished, ()
                else:
                    part, finished = finished[:room], finished[room:]
                agent.learn_batch(part)
                returns.extend(part.total_rewards().tolist())
                hits.extend(_hits(part.final_info["correct"]))
                number += len(part)
                bar.update(len(part))
                if number % epoch_length == 0 or number == episodes:
                    end_epoch(number)
            crossed = number // every > before // every
            if checkpoint_dir is not None and number < episodes and crossed:
                checkpoint(number, stream.state())
    else:
        for route in range(number + 1, episodes + 1):
            number = route
            episode = run_episode(agent, env, seed=seed if number == 1 else None)
            agent.learn(episode)
            returns.append(sum(episode.rewards))
            hits.append(bool(episode.final_info["correct"]))
            bar.update(1)
            if number % epoch_length == 0 or number == episodes:
                end_epoch(number)
            if checkpoint_dir is not None and number < episodes and number % every == 0:
                checkpoint(number)
    bar.close()
    history["episodes"] = episodes
    history["seconds"] = time.perf_counter() - start
    if checkpoint_dir is not None:
        history["resumed_at"] = resumed_at
    if eval_env is not None:
        history["final"] = {
            key: history[key][-1] for key in ("test_accuracy", "test_loss", *_EVALUATED)
        }
    else:
        history["final"] = {"train_accuracy": history["train_accuracy"][-1]}
    if out_dir is not None:
        write_results(history, out_dir)
    return history


#: What an epoch's evaluation records, besides ``test_accuracy``.
_EVALUATED = ("per_task_accuracy", "route_entropy", "modules_used", "routing_map")


def pretrain_modules(
    env: Any,
    routes: int,
    router: Agent | Any = "random",
    seed: int | None = 0,
    freeze: bool = True,
) -> dict[str, Any]:
    """Train ``env``'s modules on ``routes`` routes of a router that does not learn, then
    freeze them: the pretrained-then-frozen control of the non-stationarity benchmark
    (DESIGN 6). A router trained afterwards on ``env`` meets good modules that no longer
    change, a stationary MDP, unlike modules trained from scratch under it.

    Args:
        env: a routing env (single-sample or vector); its modules train during the call
            whatever its ``train_modules`` was.
        routes: routes to pretrain on.
        router: ``"random"`` (uniform over the allowed actions, every module trained on
            every task), ``"per-task"`` (task ``t`` takes module ``t mod num_modules`` at every
            depth: task-specific modules), any :class:`~agents.base.Agent` or a
            Stable-Baselines3 model, which only acts (it does not learn here).
        seed: seeds the first reset (data order and, for a fresh network, the modules) and the
            random router.
        freeze: leave ``env.unwrapped.train_modules`` off afterwards (else as it was). Routes
            still waiting for a module update when the call ends are not trained on.

    Returns:
        ``routes``, ``module_updates`` made and the ``train_accuracy`` of the pretraining
        routes.
    """
    if routes < 1:
        raise ValueError(f"routes must be positive, got {routes}")
    base = env.unwrapped
    network = base.network
    if isinstance(router, str):
        if router not in ("random", "per-task"):
            raise ValueError(f"router must be 'random', 'per-task' or an Agent, got {router!r}")
        router = make_agent("random" if router == "random" else "fixed-per-task", env, seed=seed)
    router = as_router(router)
    was_training, base.train_modules = base.train_modules, True
    updates_before = network.num_updates
    hits: list[bool] = []
    try:
        if isinstance(env, VectorEnv):
            for finished in _VectorRoutes(router, env, routes, seed):
                hits.extend(_hits(finished.final_info["correct"]))
        else:
            for number in range(routes):
                episode = run_episode(router, env, seed=seed if number == 0 else None)
                hits.append(bool(episode.final_info["correct"]))
    finally:
        base.train_modules = False if freeze else was_training
    return {
        "routes": routes,
        "module_updates": network.num_updates - updates_before,
        "train_accuracy": float(np.mean(hits)),
    }


def _check_vector_training(agent: Agent, eval_env: Any) -> None:
    if not agent.routes_in_batches:
        raise TypeError(
            f"a {type(agent).__name__} router keeps per-route state between act() calls, so it "
            "cannot route several samples at once yet: train it on a single-sample env"
        )
    if isinstance(eval_env, VectorEnv):
        raise TypeError(
            "eval_env must be a single-sample env (e.g. RoutingEnv(split='test', "
            "network=env.unwrapped.network)); evaluation batches its samples itself"
        )


class _VectorRoutes:
    """Step ``env`` with ``agent.act_batch``; iterate over each step's finished routes as a
    batch.

    Decisions are logged as the step's stacked arrays; a finished route is cut from the steps
    since its sub-environment's route began (same-step autoreset: a route begins on the
    observation returned with its predecessor's end). Stops once ``episodes`` routes
    finished; the last batch is cut to that count. Between two batches :meth:`state` is the
    whole of the loop's own state, for a checkpoint; ``state=`` resumes from one (the env's
    own state restored first).
    """

    def __init__(
        self,
        agent: Agent,
        env: VectorEnv,
        episodes: int,
        seed: int | None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.agent, self.env, self.episodes = agent, env, episodes
        if state is None:
            self.obs, self.infos = env.reset(seed=seed)
            self.began = np.zeros(env.num_envs, dtype=np.int64)  # step each route began at
            self.steps: dict[int, tuple[np.ndarray, ...]] = {}
            self.finished = 0
            self.number = 0
        else:
            self.obs, self.infos = env.unwrapped.observe()
            self.began = np.asarray(state["began"], dtype=np.int64)
            self.steps = {int(k): tuple(v) for k, v in state["steps"].items()}
            self.finished = int(state["finished"])
            self.number = int(state["number"])

    def state(self) -> dict[str, Any]:
        """The loop's state between two batches (plain values and arrays)."""
        return {
            "began": self.began.copy(),
            "steps": {number: list(arrays) for number, arrays in self.steps.items()},
            "finished": self.finished,
            "number": self.number,
        }

    def __iter__(self) -> Iterator[EpisodeBatch]:
        env, agent = self.env, self.agent
        squashing = squashes(env)
        while self.finished < self.episodes:
            obs, number = self.obs, self.number
            masks = np.asarray(self.infos["action_mask"])
            actions = np.asarray(agent.act_batch(obs, masks))
            if squashing:
                report_exploration(agent, env, obs, masks, actions)
            next_obs, rewards, terminated, truncated, next_infos = env.step(actions)
            self.steps[number] = (
                np.asarray(obs["activation"]),
                np.asarray(obs["task"]),
                np.asarray(obs["depth"]),
                masks,
                actions,
                np.asarray(rewards, dtype=np.float64),
            )
            self.obs, self.infos, self.number = next_obs, next_infos, number + 1
            done = np.logical_or(terminated, truncated)
            if done.any():
                rows = np.flatnonzero(done)[: self.episodes - self.finished]
                columns = _final_columns(next_infos, rows)
                batch = _batch(self.steps, self.began[rows], number, rows, columns)
                self.finished += len(rows)
                self.began[done] = number + 1
                for old in range(min(self.steps), int(self.began.min())):
                    del self.steps[old]
                yield batch


def _batch(
    steps: Mapping[int, tuple[np.ndarray, ...]],
    starts: np.ndarray,
    last: int,
    rows: np.ndarray,
    final_info: dict[str, np.ndarray],
) -> EpisodeBatch:
    """The routes of sub-environments ``rows``, which began at steps ``starts`` and ended at
    step ``last``, stacked from the logged steps (one pass per step, not per decision)."""
    first = int(starts.min())
    lengths = last - starts + 1
    width = int(lengths.max())
    if (starts == first).all():
        # The routes began together (and end together): the steps stacked, no padding.
        every = len(rows) == len(steps[last][4])  # the rows are distinct and in order
        stacked = [
            np.stack(
                [
                    steps[number][field] if every else steps[number][field][rows]
                    for number in range(first, last + 1)
                ],
                axis=1,
            ).astype(template.dtype, copy=False)
            for field, template in enumerate(steps[last])
        ]
        activation, task, depth, masks, actions, rewards = stacked
        return EpisodeBatch(activation, task, depth, masks, actions, rewards, lengths, final_info)
    stacked = []
    for field, template in enumerate(steps[last]):
        padding = -1 if field == 4 else 0  # actions are padded with -1
        shape = (len(rows), width, *template.shape[1:])
        stacked.append(np.full(shape, padding, dtype=template.dtype))
    for number in range(first, last + 1):
        live = np.flatnonzero(starts <= number)
        position = number - starts[live]
        for column, values in zip(stacked, steps[number], strict=True):
            column[live, position] = values[rows[live]]
    activation, task, depth, masks, actions, rewards = stacked
    return EpisodeBatch(activation, task, depth, masks, actions, rewards, lengths, final_info)


def _final_columns(infos: Mapping[str, Any], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The end-of-route info of the finished sub-environments ``rows``, as columns."""
    batched = infos.get("final_info")
    if batched is None:
        raise KeyError(
            "a route ended but the vector env's infos have no 'final_info': vector training "
            "needs same-step autoreset with the finished routes' infos kept (RoutingVectorEnv)"
        )
    columns = {key: np.asarray(value) for key, value in batched.items() if key[0] != "_"}
    # Every row, in order (rows are distinct and sorted): copies, cheaper than gathers.
    return {
        key: column.copy() if len(column) == len(rows) else column[rows]
        for key, column in columns.items()
    }


def _hits(correct: np.ndarray) -> list[bool]:
    """``bool(info["correct"])`` of each route (``None`` for regression counts as a miss)."""
    return np.asarray(correct).astype(bool).tolist()


def write_results(history: Mapping[str, Any], out_dir: str | os.PathLike) -> str:
    """Write ``results.json`` (the final figures first, then the per-epoch history)."""
    os.makedirs(out_dir, exist_ok=True)
    final = dict(history.get("final", {}))
    payload = {
        **final,
        "episodes": history["episodes"],
        "seconds": history["seconds"],
        "history": {k: v for k, v in history.items() if k not in ("final",)},
    }
    path = os.path.join(os.fspath(out_dir), "results.json")
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, default=jsonable)
    return path


def jsonable(value: Any) -> Any:
    """``json.dump``'s ``default`` for NumPy scalars and arrays (plain numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


_LEARN_WITH_SB3 = (
    "a Stable-Baselines3 model learns with model.learn(total_timesteps) on the env "
    "(routing_env.wrappers.sb3_vec_env.make_vec_env for batched routes)"
)
