"""Multi-agent training and analysis on the routing game (``routing_env.routing_game_v0``).

One agent per task plays the stochastic game of ``001`` 3.1.2 / ``000`` 5.1: every round each
agent routes one sample of its own task through the shared modules. Any
:class:`~agents.base.Agent` plugs in, and a population may mix algorithms (for example five WPL
and five Q-learning routers) to see which learners win the shared modules.

* :func:`make_population` builds one agent per router by name (:func:`agents.make_agent`).
* :func:`run_round` plays one round and returns each agent's :class:`~agents.base.Episode`.
* :func:`train_multiagent` trains every agent on its own episodes; every ``eval_every``
  rounds (an "epoch") it records per-agent rewards and test accuracy, selection entropy, the
  routing map, the path overlap between tasks and snapshots of the tabular policies.
* :func:`evaluate_multiagent` routes a test game greedily.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.base import Agent, Episode, route_path
from agents.evaluation import route_statistics, selection_entropy
from agents.factory import make_agent
from agents.run_checkpoint import resume_run, save_run
from agents.tabular import TabularAgent
from agents.training import write_results
from routing_env.batch_routing import batch_routing_obstacle, observation_rows, route_samples
from routing_env.metrics import evaluation_indices

__all__ = [
    "evaluate_multiagent",
    "make_population",
    "path_overlap",
    "policy_table",
    "run_round",
    "train_multiagent",
    "write_multiagent_results",
]


def _parallel(env: Any) -> Any:
    """The parallel game behind ``env`` (a ``RoutingGame``, or its AEC form)."""
    from pettingzoo import AECEnv
    from pettingzoo.utils.conversions import aec_to_parallel

    if isinstance(env, AECEnv):
        return aec_to_parallel(env)
    return env


def _game(env: Any) -> Any:
    game = _parallel(env).unwrapped
    for name in ("network", "agent_task", "task_samples", "possible_agents"):
        if not hasattr(game, name):
            raise TypeError(
                f"expected a routing game (routing_env.routing_game_v0), got "
                f"{type(game).__name__} without {name!r}"
            )
    return game


# ---------------------------------------------------------------------- populations


def make_population(
    names: str | Sequence[str] | Mapping[str, str],
    env: Any,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Agent]:
    """One agent per router of ``env``, built by :func:`agents.make_agent`.

    Args:
        names: an agent name for every router (``"wpl"``), one name per router in agent order
            (``["wpl"] * 5 + ["q"] * 5``), or a mapping router -> name.
        env: the routing game (parallel or AEC); agents are sized for it (tabular agents get
            ``num_tasks`` = the game's tasks and use the row of their router's task).
        seed: the routers' seeds are spawned from it (every router has its own stream).
        options: constructor keywords per agent name, e.g. ``{"wpl": {"lr": 0.5}}``.
    """
    game = _game(env)
    agents = list(game.possible_agents)
    if isinstance(names, str):
        chosen = dict.fromkeys(agents, names)
    elif isinstance(names, Mapping):
        chosen = dict(names)
    else:
        names = list(names)
        if len(names) != len(agents):
            raise ValueError(f"{len(names)} agent names for the game's {len(agents)} routers")
        chosen = dict(zip(agents, names, strict=True))
    if set(chosen) != set(agents):
        raise ValueError(f"names must cover exactly the routers {agents}; got {sorted(chosen)}")
    seeds = np.random.SeedSequence(seed).generate_state(len(agents))
    options = options or {}
    return {
        agent: make_agent(chosen[agent], game, seed=int(s), **dict(options.get(chosen[agent], {})))
        for agent, s in zip(agents, seeds, strict=True)
    }


# ---------------------------------------------------------------------- rounds


def run_round(
    policies: Mapping[str, Agent],
    env: Any,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Episode]:
    """Play one round of the game; every agent acts from its own observation and info.

    Returns each agent's route as an :class:`~agents.base.Episode` (no learning here), in
    agent order.
    """
    game = _parallel(env)
    observations, infos = game.reset(seed=seed, options=options)
    record: dict[str, tuple[list, list, list, list]] = {
        agent: ([], [], [], []) for agent in game.agents
    }
    episodes: dict[str, Episode] = {}
    while game.agents:
        # Agents whose route has ended stay in the round (fixed agent set) but act no more.
        actions = {
            agent: int(policies[agent].act(observations[agent], infos[agent]))
            for agent in game.agents
            if agent not in episodes
        }
        for agent, action in actions.items():
            seen, taken, _, given = record[agent]
            seen.append(observations[agent])
            given.append(infos[agent])
            taken.append(action)
        observations, rewards, terminations, truncations, infos = game.step(actions)
        for agent in actions:
            seen, taken, paid, given = record[agent]
            paid.append(float(rewards[agent]))
            if infos[agent]["route_done"] or terminations[agent] or truncations[agent]:
                episodes[agent] = Episode(seen, taken, paid, given, final_info=infos[agent])
    return {agent: episodes[agent] for agent in record}


def _check_policies(policies: Mapping[str, Agent], game: Any) -> None:
    missing = [agent for agent in game.possible_agents if agent not in policies]
    extra = [agent for agent in policies if agent not in game.agent_task]
    if missing or extra:
        raise ValueError(
            f"policies must hold one agent per router {list(game.possible_agents)}; "
            f"missing {missing}, unknown {extra}"
        )


# ---------------------------------------------------------------------- analysis


def policy_table(agent: Agent, task: int, masks: np.ndarray) -> np.ndarray | None:
    """The agent's action distribution at every depth for ``task``, ``(max_depth, actions)``.

    Only for the tabular agents (:class:`~agents.tabular.TabularAgent`); ``None`` otherwise.
    ``masks`` holds the action mask of every depth.
    """
    if not isinstance(agent, TabularAgent):
        return None
    return np.array([agent.policy(task, depth, masks[depth]) for depth in range(len(masks))])


def path_overlap(
    paths: Sequence[Sequence[int]], extra_action: int, recurrent: bool = False
) -> np.ndarray:
    """Fraction of shared modules between the routes of every pair of tasks (``000`` fig. 5.12).

    A route's modules are its ``(depth, module)`` pairs in layered routing (a module belongs
    to one layer) and its set of modules in recurrent routing (one bank); PASS / stop is not a
    module. Entry ``(t, u)`` is ``|M_t & M_u| / max(|M_t|, |M_u|)``: for two routes of ``L``
    modules, the fraction of either route that the other also uses. The diagonal is 1.
    """
    sets = []
    for path in paths:
        modules = [(d, a) for d, a in enumerate(path) if 0 <= a != extra_action]
        sets.append({a for _, a in modules} if recurrent else set(modules))
    count = len(sets)
    overlap = np.eye(count)
    for t in range(count):
        for u in range(t + 1, count):
            size = max(len(sets[t]), len(sets[u]))
            shared = len(sets[t] & sets[u]) / size if size else 0.0
            overlap[t, u] = overlap[u, t] = shared
    return overlap


def _mean_loss(infos: Sequence[Mapping[str, Any]]) -> float:
    """Mean loss of the routes that made a prediction (invalid-action routes have none)."""
    losses = np.array([info["loss"] for info in infos], dtype=float)
    losses = losses[losses >= 0]  # -1: no prediction was made
    return float(losses.mean()) if len(losses) else float("nan")


def evaluate_multiagent(
    policies: Mapping[str, Agent],
    env: Any,
    rounds: int | None = None,
    batched: bool = True,
) -> dict[str, Any]:
    """Greedy evaluation of every agent on its own task's samples of ``env``.

    Round ``k`` routes the ``k``-th evaluation sample of every task (``reset`` with
    ``options={"sample_indices": ...}``); the samples are the whole split (default) or
    ``rounds`` evenly spaced samples per task, the same at every call. A task with fewer
    samples than rounds repeats its last one and the repeats are not counted. Use a game that
    does not train its modules (``split="test"``, or ``train_modules=False``) to measure
    without changing the network.

    Without module training the agents do not interact, so the rounds need not be played one
    by one: with ``batched`` (the default) every sample is routed at once
    (:func:`routing_env.batch_routing.route_samples`, one greedy ``act_batch`` per agent and
    depth) when ``env`` is the parallel game itself (or the AEC game of
    ``routing_game_v0.env``), the game allows it
    (:func:`~routing_env.batch_routing.batch_routing_obstacle`) and every agent declares its
    greedy actions batchable (:meth:`~agents.base.Agent.greedy_batchable`); the results are
    those of playing the rounds (``batched=False``), up to float rounding in the losses.

    Returns the keys of :func:`agents.evaluation.route_statistics` over all counted routes
    (``accuracy``, ``per_task_accuracy``, ``route_entropy``, ``modules_used``,
    ``routing_map``...), plus ``per_agent_accuracy``, ``per_agent_reward`` and
    ``per_agent_loss`` (agent -> value), ``greedy_paths`` (agent -> its most frequent route)
    and ``path_overlap`` (task x task, :func:`path_overlap` of the greedy paths).
    """
    game = _game(env)
    _check_policies(policies, game)
    network = game.network
    selected = {}
    for agent, samples in game.task_samples.items():
        count = samples.size if rounds is None else min(int(rounds), samples.size)
        selected[agent] = samples[evaluation_indices(samples.size, count)]
    total = max(len(indices) for indices in selected.values())
    together = (
        batched
        and total > 0
        and _parallel(env) is game
        and batch_routing_obstacle(game) is None
        and all(policy.greedy_batchable() for policy in policies.values())
    )
    infos: dict[str, list] = {agent: [] for agent in game.possible_agents}
    returns: dict[str, list] = {agent: [] for agent in game.possible_agents}
    was_greedy = {agent: policy.greedy for agent, policy in policies.items()}
    for policy in policies.values():
        policy.greedy = True
    try:
        if together:
            infos, returns = _route_together(policies, game, selected)
        for k in range(0 if together else total):
            chosen = {a: int(ix[min(k, len(ix) - 1)]) for a, ix in selected.items()}
            episodes = run_round(policies, game, options={"sample_indices": chosen})
            for agent, episode in episodes.items():
                if k < len(selected[agent]):
                    infos[agent].append(episode.final_info)
                    returns[agent].append(sum(episode.rewards))
    finally:
        for agent, policy in policies.items():
            policy.greedy = was_greedy[agent]
    agents = list(game.possible_agents)
    result = route_statistics(
        [info for agent in agents for info in infos[agent]],
        [value for agent in agents for value in returns[agent]],
        [game.agent_task[agent] for agent in agents for _ in infos[agent]],
        num_tasks=game.num_tasks,
        max_depth=network.max_depth,
        num_actions=network.num_actions,
        recurrent=network.routing == "recurrent",
    )
    result["per_agent_accuracy"] = {
        agent: float(np.mean([bool(info["correct"]) for info in infos[agent]])) for agent in agents
    }
    result["per_agent_reward"] = {agent: float(np.mean(returns[agent])) for agent in agents}
    result["per_agent_loss"] = {agent: _mean_loss(infos[agent]) for agent in agents}
    paths = {
        agent: list(Counter(route_path(info) for info in infos[agent]).most_common(1)[0][0])
        for agent in agents
    }
    result["greedy_paths"] = paths
    result["path_overlap"] = path_overlap(
        [paths[agent] for agent in agents],
        network.extra_action,
        recurrent=network.routing == "recurrent",
    ).tolist()
    return result


def _route_together(
    policies: Mapping[str, Agent], game: Any, selected: Mapping[str, np.ndarray]
) -> tuple[dict[str, list], dict[str, list]]:
    """Every agent's evaluation samples routed at once: per agent, the routes' final infos
    (``correct``, ``loss``, ``path``) and returns, in the order of its samples."""
    agents = list(game.possible_agents)
    by_task = {game.agent_task[agent]: policies[agent] for agent in agents}

    def decide(obs: Any, masks: np.ndarray, tasks: np.ndarray, depth: int) -> np.ndarray:
        actions = np.empty(len(tasks), dtype=np.int64)
        for task in np.unique(tasks).tolist():
            rows = np.flatnonzero(tasks == task)
            actions[rows] = by_task[task].act_batch(observation_rows(obs, rows), masks[rows])
        return actions

    routed = route_samples(game, np.concatenate([selected[a] for a in agents]), decide)
    final = routed.final_info
    infos: dict[str, list] = {}
    returns: dict[str, list] = {}
    start = 0
    for agent in agents:
        rows = slice(start, start + len(selected[agent]))
        start = rows.stop
        infos[agent] = [
            {"correct": correct, "loss": loss, "path": path}
            for correct, loss, path in zip(
                final["correct"][rows].tolist(),
                final["loss"][rows].tolist(),
                final["path"][rows],
                strict=True,
            )
        ]
        returns[agent] = routed.returns[rows].tolist()
    return infos, returns


# ---------------------------------------------------------------------- training

#: What an epoch's evaluation records as it comes, besides the accuracies and greedy paths.
_EVALUATED = ("route_entropy", "modules_used", "routing_map", "path_overlap")
#: The last evaluation's figures in a history's ``final``, besides the accuracies.
_FINAL = ("route_entropy", "modules_used", "routing_map", "greedy_paths", "path_overlap")


def train_multiagent(
    policies: Mapping[str, Agent],
    env: Any,
    episodes: int,
    eval_env: Any | None = None,
    eval_every: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
    eval_rounds: int | None = None,
    out_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> dict[str, Any]:
    """Train one agent per router on the routing game for ``episodes`` rounds.

    Every round each agent routes one sample of its task (:func:`run_round`) and then learns
    from its own :class:`~agents.base.Episode` (``agent.learn``), in agent order. The same
    agent object may serve several routers; it then learns from each of their episodes.

    Args:
        policies: router name -> agent, one per ``env.possible_agents``; any mix of
            algorithms.
        env: the training game (parallel or AEC form of ``routing_game_v0``).
        episodes: rounds to play (each routes ``num_tasks`` samples).
        eval_env: optional test game, usually ``split="test"`` sharing ``env``'s network;
            evaluated greedily (:func:`evaluate_multiagent`) at the end of every epoch.
        eval_every: rounds per epoch (default ``episodes // 10``, at least 1).
        seed: passed to the first ``reset`` (seeds the sample draws and a fresh network).
        progress: show a progress bar.
        eval_rounds: samples per task per evaluation (default: the whole test split).
        out_dir: if given, ``results.json`` is written there.
        checkpoint_dir: a folder for the run's checkpoint (:mod:`agents.run_checkpoint`),
            written every ``checkpoint_every`` rounds (default: one per epoch), between two
            rounds; when the folder holds one, the run resumes from it and ends exactly as the
            uninterrupted run would.
        checkpoint_every: rounds between checkpoints.

    Returns:
        The history. Per epoch: ``episode`` (rounds so far), ``routes``; per agent
        (agent -> list): ``mean_reward`` and ``train_accuracy`` of the epoch's training
        routes, ``policy`` (snapshot ``max_depth x num_actions`` of the agent's distribution
        for its task, tabular agents only; ``initial_policy`` holds the
        one before training) and ``policy_entropy`` (mean over depths, nats);
        ``train_route_entropy`` (selection entropy of the epoch's training
        routes, all agents together). With ``eval_env``, also ``test_accuracy`` (agent ->
        list), ``mean_test_accuracy``, ``route_entropy`` (greedy routes), ``modules_used``,
        ``routing_map``, ``greedy_paths`` and ``path_overlap``. Then ``final`` (the last
        evaluation, or the last epoch's training figures), ``agents``, ``algorithms``
        (agent -> class name), ``episodes``, ``seconds`` and the network's ``max_depth``,
        ``num_actions``, ``extra_action`` and ``routing``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    game = _parallel(env)
    base = _game(env)
    _check_policies(policies, base)
    network = base.network
    agents = list(base.possible_agents)
    masks = np.array([network.action_mask(d) for d in range(network.max_depth)])
    epoch_length = max(1, episodes // 10) if eval_every is None else int(eval_every)
    if epoch_length < 1:
        raise ValueError(f"eval_every must be positive, got {eval_every}")
    tabular = [a for a in agents if isinstance(policies[a], TabularAgent)]
    history: dict[str, Any] = {
        "agents": agents,
        "algorithms": {agent: type(policies[agent]).__name__ for agent in agents},
        "max_depth": network.max_depth,
        "num_actions": network.num_actions,
        "extra_action": network.extra_action,
        "routing": network.routing,
        "episode": [],
        "routes": [],
        "mean_reward": {agent: [] for agent in agents},
        "train_accuracy": {agent: [] for agent in agents},
        "train_route_entropy": [],
        "initial_policy": {
            agent: policy_table(policies[agent], base.agent_task[agent], masks).tolist()
            for agent in tabular
        },
        "policy": {agent: [] for agent in tabular},
        "policy_entropy": {agent: [] for agent in tabular},
    }
    if eval_env is not None:
        history.update(
            {
                "test_accuracy": {agent: [] for agent in agents},
                "mean_test_accuracy": [],
                "route_entropy": [],
                "modules_used": [],
                "routing_map": [],
                "greedy_paths": [],
                "path_overlap": [],
            }
        )
    returns: dict[str, list[float]] = {agent: [] for agent in agents}
    hits: dict[str, list[bool]] = {agent: [] for agent in agents}
    counts = np.zeros((network.max_depth, network.num_actions), dtype=np.int64)
    arguments = {"episodes": episodes, "seed": seed, "eval_every": epoch_length}
    every = epoch_length if checkpoint_every is None else int(checkpoint_every)
    first, spent = 1, 0.0
    saved = resume_run(checkpoint_dir, policies, base, arguments)
    if saved is not None:
        first, spent, history = int(saved["number"]) + 1, float(saved["seconds"]), saved["history"]
        returns, hits, counts = saved["returns"], saved["hits"], np.asarray(saved["counts"])
    resumed_at = first - 1
    start = time.perf_counter() - spent
    bar = tqdm(
        total=episodes, initial=first - 1, disable=not progress, unit="round", dynamic_ncols=True
    )

    def checkpoint(number: int) -> None:
        loop = {
            "number": number,
            "returns": returns,
            "hits": hits,
            "counts": counts.copy(),
            "history": history,
            "seconds": time.perf_counter() - start,
        }
        save_run(checkpoint_dir, policies, base, arguments, loop)

    for number in range(first, episodes + 1):
        played = run_round(policies, game, seed=seed if number == 1 else None)
        for agent, episode in played.items():
            policies[agent].learn(episode)
            returns[agent].append(sum(episode.rewards))
            hits[agent].append(bool(episode.final_info["correct"]))
            for depth, action in enumerate(route_path(episode.final_info)[: network.max_depth]):
                counts[depth, action] += 1
        bar.update(1)
        if number % epoch_length and number != episodes:
            if checkpoint_dir is not None and number % every == 0:
                checkpoint(number)
            continue
        history["episode"].append(number)
        history["routes"].append(number * len(agents))
        for agent in agents:
            history["mean_reward"][agent].append(float(np.mean(returns[agent])))
            history["train_accuracy"][agent].append(float(np.mean(hits[agent])))
        history["train_route_entropy"].append(selection_entropy(counts))
        for agent in tabular:
            table = policy_table(policies[agent], base.agent_task[agent], masks)
            history["policy"][agent].append(table.tolist())
            history["policy_entropy"][agent].append(selection_entropy(table))
        returns = {agent: [] for agent in agents}
        hits = {agent: [] for agent in agents}
        counts[:] = 0
        if eval_env is not None:
            result = evaluate_multiagent(policies, eval_env, eval_rounds)
            for agent in agents:
                history["test_accuracy"][agent].append(result["per_agent_accuracy"][agent])
            history["mean_test_accuracy"].append(
                float(np.mean(list(result["per_agent_accuracy"].values())))
            )
            for key in _EVALUATED:
                history[key].append(result[key])
            history["greedy_paths"].append(result["greedy_paths"])
            bar.set_postfix(test_acc=f"{history['mean_test_accuracy'][-1]:.3f}")
        else:
            mean = np.mean([history["train_accuracy"][a][-1] for a in agents])
            bar.set_postfix(train_acc=f"{mean:.3f}")
        if checkpoint_dir is not None and number % every == 0 and number < episodes:
            checkpoint(number)
    bar.close()
    history["episodes"] = episodes
    history["seconds"] = time.perf_counter() - start
    if checkpoint_dir is not None:
        history["resumed_at"] = resumed_at
    if eval_env is not None:
        history["final"] = {
            "test_accuracy": history["mean_test_accuracy"][-1],
            "per_agent_accuracy": {a: history["test_accuracy"][a][-1] for a in agents},
            **{key: history[key][-1] for key in _FINAL},
        }
    else:
        history["final"] = {
            "train_accuracy": float(np.mean([history["train_accuracy"][a][-1] for a in agents])),
            "train_route_entropy": history["train_route_entropy"][-1],
        }
    if out_dir is not None:
        write_multiagent_results(history, out_dir)
    return history


#: ``results.json`` of a multi-agent run: the final figures first, then the per-epoch history
#: (the same file layout as a single-agent run's).
write_multiagent_results = write_results
