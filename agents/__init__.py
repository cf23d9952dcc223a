"""Routers (RL agents) for routing-env environments."""

from agents.fixed import FixedRouter, RandomRouter

__all__ = ["FixedRouter", "RandomRouter"]
