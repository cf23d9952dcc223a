"""Routers (RL agents) for routing-env environments.

Tabular agents keyed by (task, depth): :class:`WPL`, :class:`QLearning`,
:class:`AdvantageLearning`, :class:`Reinforce`, :class:`WoLFPHC`. Approximate agents (2-layer
MLPs on ``concat(h, onehot(t), onehot(d))``): :class:`ReinforceApprox`, :class:`ActorCritic`,
:class:`QApprox`, :class:`AdvantageApprox`, :class:`WPLApprox`, :class:`EpsilonReinforce`.
Architectures: :class:`SingleAgent`, :class:`PerTask`, :class:`Dispatched`,
:class:`OfflineDispatcher`. Non-learning references: :class:`FixedRouter`,
:class:`RandomRouter`. Build any of them by name with :func:`make_agent`; train with
:func:`train`, measure with :func:`evaluate`, persist with :func:`save` / :func:`load`.
Multi-agent routing game (``routing_env.routing_game_v0``): :func:`make_population`,
:func:`train_multiagent`, :func:`evaluate_multiagent`.
"""

from agents.actor_critic import ActorCritic
from agents.advantage import AdvantageLearning
from agents.advantage_approx import AdvantageApprox
from agents.architectures import (
    Dispatched,
    OfflineDispatcher,
    PerTask,
    SingleAgent,
    collect_activations,
)
from agents.base import Agent, Episode, route_path
from agents.eps_reinforce import EpsilonReinforce
from agents.factory import AGENT_NAMES, default_num_envs, make_agent
from agents.fixed import FixedRouter, RandomRouter
from agents.multiagent import evaluate_multiagent, make_population, train_multiagent
from agents.persistence import load, save
from agents.q_approx import QApprox
from agents.q_learning import QLearning
from agents.reinforce import Reinforce
from agents.reinforce_approx import ReinforceApprox
from agents.training import evaluate, pretrain_modules, run_episode, train
from agents.wolf_phc import WoLFPHC
from agents.wpl import WPL
from agents.wpl_approx import WPLApprox

__all__ = [
    "AGENT_NAMES",
    "ActorCritic",
    "AdvantageApprox",
    "AdvantageLearning",
    "Agent",
    "Dispatched",
    "EpsilonReinforce",
    "Episode",
    "FixedRouter",
    "OfflineDispatcher",
    "PerTask",
    "QApprox",
    "QLearning",
    "RandomRouter",
    "Reinforce",
    "ReinforceApprox",
    "SingleAgent",
    "WPL",
    "WPLApprox",
    "WoLFPHC",
    "collect_activations",
    "default_num_envs",
    "evaluate",
    "evaluate_multiagent",
    "load",
    "make_agent",
    "make_population",
    "pretrain_modules",
    "route_path",
    "run_episode",
    "save",
    "train",
    "train_multiagent",
]
