"""Saving and loading agents without executing code on load.

A checkpoint is one file written by ``torch.save`` holding only tensors, strings and plain
containers: the agent's class name, its constructor arguments as JSON and its learned state.
:func:`load` reads it with ``torch.load(weights_only=True)`` and rebuilds the agent from the
registry of known classes, so a checkpoint cannot name arbitrary code to run.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from typing import Any, TypeVar

import torch

from agents.base import Agent
from routing_env.checkpoint import write_checkpoint_file

AgentType = TypeVar("AgentType", bound=type[Agent])

_REGISTRY: dict[str, type[Agent]] = {}
_FORMAT = "routing-env-agent/1"


def register(cls: AgentType) -> AgentType:
    """Class decorator: make an agent class loadable by :func:`load`."""
    _REGISTRY[cls.__name__] = cls
    return cls


def agent_state(agent: Agent, with_state: bool = True) -> dict[str, Any]:
    """``{"class", "config"}`` of a registered agent (and ``"state"`` when asked)."""
    name = type(agent).__name__
    if _REGISTRY.get(name) is not type(agent):
        raise TypeError(f"{name} is not a registered agent class; decorate it with @register")
    entry: dict[str, Any] = {"class": name, "config": agent.config}
    if with_state:
        entry["state"] = agent.state_dict()
    return entry


def rebuild_agent(entry: Mapping[str, Any]) -> Agent:
    """A fresh agent of the class and configuration recorded by :func:`agent_state`."""
    name = entry["class"]
    if name not in _REGISTRY:
        raise ValueError(f"unknown agent class {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_config(entry["config"])


def save(agent: Agent, path: str | os.PathLike, network: Any | None = None) -> None:
    """Write ``agent`` (configuration, learned state, random stream) to ``path``, and with
    ``network`` (``env.unwrapped.network``) the modules it routes through: a router is only as
    good as its modules, so save both to evaluate it later (:func:`load` with ``network=``)."""
    entry = agent_state(agent)
    checkpoint = {
        "format": _FORMAT,
        "class": entry["class"],
        "config": json.dumps(entry["config"]),
        "state": entry["state"],
    }
    if network is not None:
        checkpoint["network"] = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    write_checkpoint_file(path, checkpoint)


def load(path: str | os.PathLike, network: Any | None = None) -> Agent:
    """Rebuild the agent saved at ``path``; it acts exactly as the saved agent would.

    ``network``: a routed network of the same structure (the network of an env built with the
    same settings, e.g. ``RoutingEnv("digits-mtl", split="test").network``) into which the
    saved modules are loaded; the file must hold them (``save(..., network=...)``).
    """
    name = os.fspath(path)
    try:
        checkpoint = torch.load(name, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{name} is not a readable routing-env agent checkpoint ({first})"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _FORMAT:
        raise ValueError(f"{name} is not a routing-env agent checkpoint")
    agent = rebuild_agent(
        {"class": checkpoint["class"], "config": json.loads(checkpoint["config"])}
    )
    agent.load_state_dict(checkpoint["state"])
    if network is not None:
        if "network" not in checkpoint:
            raise ValueError(
                f"{name} holds no modules: save it with save(agent, path, network=...)"
            )
        try:
            network.load_state_dict(checkpoint["network"])
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ValueError(
                f"{name}: its modules do not fit this network (built with other settings?): {first}"
            ) from None
    return agent
