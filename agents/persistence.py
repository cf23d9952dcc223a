"""Saving and loading agents without executing code on load.

A checkpoint is one file written by ``torch.save`` holding only tensors, strings and plain
containers: the agent's class name, its constructor arguments as JSON and its learned state.
:func:`load` reads it with ``torch.load(weights_only=True)`` and rebuilds the agent from the
registry of known classes, so a checkpoint cannot name arbitrary code to run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import torch

from agents.base import Agent

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


def save(agent: Agent, path: str | os.PathLike) -> None:
    """Write ``agent`` (configuration, learned state, random stream) to ``path``."""
    entry = agent_state(agent)
    checkpoint = {
        "format": _FORMAT,
        "class": entry["class"],
        "config": json.dumps(entry["config"]),
        "state": entry["state"],
    }
    torch.save(checkpoint, os.fspath(path))


def load(path: str | os.PathLike) -> Agent:
    """Rebuild the agent saved at ``path``; it acts exactly as the saved agent would."""
    checkpoint = torch.load(os.fspath(path), weights_only=True, map_location="cpu")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a routing-env agent checkpoint")
    agent = rebuild_agent(
        {"class": checkpoint["class"], "config": json.loads(checkpoint["config"])}
    )
    agent.load_state_dict(checkpoint["state"])
    return agent
