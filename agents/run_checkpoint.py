"""A training run's checkpoint: router, modules, environment and loop, to resume exactly
(DESIGN 7, "Checkpoints").

One file, ``checkpoint.pt`` in the run's folder, written atomically and read without executing
code (:mod:`routing_env.checkpoint`). It holds:

* the routed network's parameters, its module trainer (optimizer state, update count, the
  routes queued for the next update) and its selection window;
* the training env's sample stream, random state and routes in flight (a vector env's routes
  in flight train, after a resume, by recomputing their forward pass: the same update);
* the router's learned state and random stream, and torch's global random state;
* the loop's counters and history so far, and the run's arguments (budget, seed, epochs);
* the dataset's name and content hash, so that a run resumed on other data is refused.

:func:`agents.train` writes it every ``checkpoint_every`` routes (the single env between two
routes; the vector env after a step, its routes in flight included) and resumes from it when
the folder has one; :func:`agents.resume` resumes with the arguments the run was started with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from agents.base import Agent
from routing_env.checkpoint import (
    CheckpointError,
    dataset_fingerprint,
    from_plain,
    network_state,
    read_checkpoint,
    restore_network,
    to_plain,
    write_checkpoint,
)

#: The checkpoint's file name in a run's folder.
CHECKPOINT_FILE = "checkpoint.pt"


def checkpoint_path(folder: str | os.PathLike) -> str:
    """``folder/checkpoint.pt``."""
    return os.path.join(os.fspath(folder), CHECKPOINT_FILE)


def save_run(
    folder: str | os.PathLike,
    routers: Agent | Mapping[str, Agent],
    env: Any,
    arguments: Mapping[str, Any],
    loop: Mapping[str, Any],
) -> str:
    """Write the run's checkpoint to ``folder/checkpoint.pt`` (atomically); returns its path.

    ``routers``: the router, or the game's routers by agent name."""
    base = env.unwrapped
    named = _named(routers)
    payload = {
        "dataset": dataset_fingerprint(base.dataset),
        "arguments": to_plain(dict(arguments)),
        "agent_class": {name: type(agent).__name__ for name, agent in named.items()},
        "agent": {name: agent.state_dict() for name, agent in named.items()},
        "network": network_state(base.network),
        "env": to_plain(base.checkpoint_state()),
        "torch_rng": torch.get_rng_state(),
        "loop": to_plain(dict(loop)),
    }
    return write_checkpoint(checkpoint_path(folder), payload)


def read_run(folder: str | os.PathLike, env: Any | None = None) -> dict[str, Any]:
    """The checkpoint in ``folder``, checked against ``env``'s dataset when given."""
    dataset = None if env is None else env.unwrapped.dataset
    return read_checkpoint(checkpoint_path(folder), dataset=dataset)


def restore_run(
    content: Mapping[str, Any], routers: Agent | Mapping[str, Agent], env: Any
) -> dict[str, Any]:
    """Put the router(s), the network and the env back into the checkpoint's state; returns the
    loop's state."""
    named = _named(routers)
    classes = {name: type(agent).__name__ for name, agent in named.items()}
    if content["agent_class"] != classes:
        raise CheckpointError(
            f"the checkpoint holds the routers {content['agent_class']}, not {classes}"
        )
    for name, agent in named.items():
        agent.load_state_dict(content["agent"][name])
    base = env.unwrapped
    restore_network(base.network, content["network"])
    base.restore_state(from_plain(content["env"]))
    torch.set_rng_state(content["torch_rng"])
    return from_plain(content["loop"])


def resume_run(
    folder: str | os.PathLike | None,
    routers: Agent | Mapping[str, Agent],
    env: Any,
    arguments: Mapping[str, Any],
) -> dict[str, Any] | None:
    """When ``folder`` holds a checkpoint: check that it was made by a run with ``arguments``
    on ``env``'s data, restore the router(s), network and env, and return the loop's state;
    else ``None`` (a fresh run)."""
    if folder is None or not os.path.exists(checkpoint_path(folder)):
        return None
    content = read_run(folder, env)
    saved_arguments = from_plain(content["arguments"])
    if saved_arguments != dict(arguments):
        raise CheckpointError(
            f"checkpoint {checkpoint_path(folder)}: made by a run with arguments "
            f"{saved_arguments}, not {dict(arguments)}"
        )
    return restore_run(content, routers, env)


def _named(routers: Agent | Mapping[str, Agent]) -> dict[str, Agent]:
    """One router as ``{"router": agent}``; a game's routers as they are."""
    return {"router": routers} if isinstance(routers, Agent) else dict(routers)
