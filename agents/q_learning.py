"""Tabular Q-learning with epsilon-greedy exploration: ``000`` eq. 3.2-3.3 (Watkins, 1989)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from agents.base import Episode
from agents.persistence import register
from agents.tabular import EpsilonGreedyTabular, decision_rewards

TARGETS = ("bootstrap", "return")


@register
@dataclass(eq=False)
class QLearning(EpsilonGreedyTabular):
    """Q-learning on a table ``Q[t, d, a]`` per (task, depth), acting epsilon-greedily.

    After each decision ``i`` (state ``s = (t, d)``, action ``a``, reward ``r_i``, next state
    ``s'`` = the next decision's ``(t, d)``), ``000`` eq. 3.2::

        Q(s, a) <- Q(s, a) + lr * (r_i + gamma * max_{a' allowed in s'} Q(s', a') - Q(s, a))

    with the target ``r_i`` alone after the route's last decision. The actions allowed in
    ``s'`` come from the next decision's ``info["action_mask"]`` (all actions without one).
    Decisions are learned in route order, so each bootstraps from the next state's value before
    that state's own update. Rewards are taken as paid (``episode.rewards``, the last holding
    the final reward): bootstrapping discounts the final reward by ``gamma`` per step, unlike
    the Monte Carlo returns of the policy-gradient agents; the two agree at the default
    ``gamma = 1``.

    The table's state ``(t, d)`` does not record the modules chosen before ``d``: whichever
    module a decision before the last picks, the next state is the same ``(t, d + 1)``, so
    without intermediate rewards every action of a depth before the last has the same target
    and, once each has been tried often enough, the same value. Only the last depth's values
    tell modules apart (``docs/results.md``, "Tabular Q-learning on DigitsMTL").
    ``target="return"`` learns every decision from its Monte Carlo return instead, ``Q(s, a)
    <- Q(s, a) + lr * (R_i - Q(s, a))`` with ``R_i`` as in :meth:`~agents.base.Episode.returns`
    (the Monte Carlo reading ``000`` 7.1.2 chose for advantage learning), whose values at every
    depth depend on the action through the modules it leads to.

    Acting, ``000`` eq. 3.3, is epsilon-greedy on ``Q``
    (:class:`~agents.tabular.EpsilonGreedyTabular`): among the ``n`` allowed actions the greedy
    one (ties broken at random, as the seed says; tables start all tied) has probability
    ``1 - epsilon`` and each other one ``epsilon / (n - 1)``; epsilon can anneal linearly.
    Greedy mode takes the allowed action with the largest value, the lowest index on ties.

    ``agents.make_agent("q", env)`` builds it with ``lr=0.01`` and ``epsilon=0.01``
    (:data:`routing_env.settings.ROUTER_DEFAULTS`): with this class's ``lr=0.1``, ``epsilon=0.1``
    per-task Q falls back to the majority rate of DigitsMTL after about 25k routes.

    Arguments: those of :class:`~agents.tabular.EpsilonGreedyTabular` (``lr`` is ``alpha``), and:

    :param target: ``"bootstrap"`` (eq. 3.2, the default) or ``"return"`` (Monte Carlo).
    :param initial_value: the value every entry of ``Q`` starts at (0 by default; a value above
        the largest return is optimistic initialisation, which has every action tried early).
    """

    target: Literal["bootstrap", "return"] = "bootstrap"
    initial_value: float = 0.0

    state_names = ("q", "episodes_seen")

    def init_learned_state(self) -> None:
        """Check ``target``; ``Q`` starts at ``initial_value`` everywhere (all actions tied)."""
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {self.target!r}")
        shape = (self.num_tasks, self.max_depth, self.num_actions)
        self.q = np.full(shape, float(self.initial_value))
        self.episodes_seen = np.zeros((), dtype=np.int64)

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``Q(s, .)``."""
        return self.q[tasks, depths]

    # ------------------------------------------------------------------ learning

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order, in one compiled loop
        (:func:`q_steps`): ``target="bootstrap"`` route by route, each bootstrapping from the
        table the earlier ones left; ``target="return"`` decision by decision.

        :param episodes: finished routes, oldest first; their ``infos`` may carry each
            decision's ``action_mask``.
        """
        ordered = self.ordered_decisions(episodes)
        if ordered is None:
            return
        tasks, depths, actions, returns, masks = ordered
        bootstrap = self.target == "bootstrap"
        if bootstrap:
            rewards, lengths = decision_rewards(episodes)
        else:
            rewards, lengths = np.ascontiguousarray(returns, dtype=np.float64), np.ones(0, np.int64)
        self.q = np.ascontiguousarray(self.q)
        q_steps(
            self.q.reshape(-1, self.num_actions),
            tasks * self.max_depth + depths,
            actions,
            rewards,
            masks,
            lengths,
            self.lr,
            self.gamma,
            bootstrap,
        )
        self.episodes_seen += len(episodes)


@numba.njit(cache=True)
def q_steps(
    q: np.ndarray,
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    masks: np.ndarray,
    lengths: np.ndarray,
    lr: float,
    gamma: float,
    bootstrap: bool,
) -> None:
    """Eq. 3.2 in place on ``q`` (``(states, actions)``) for the decisions of several routes in
    order: decision ``i`` was made in state ``states[i]``, took ``actions[i]`` and was paid
    ``rewards[i]``; route ``k`` is the next ``lengths[k]`` decisions, and the actions allowed
    in a decision's state are its row of ``masks``.

    ``bootstrap``: per route, every target ``r_i + gamma max_{a' allowed} Q(s_{i+1}, a')``
    (``r_i`` at the last decision) is read before the route's updates, each update from the
    value before them (:func:`~agents.tabular.bootstrapped_targets`). Otherwise ``rewards`` are
    the returns ``R_i``, each decision's target, applied one after the other (``lengths``
    unused).
    """
    if not bootstrap:
        for i in range(states.shape[0]):
            taken = q[states[i], actions[i]]
            q[states[i], actions[i]] = taken + lr * (rewards[i] - taken)
        return
    longest = 0
    for length in lengths:
        longest = max(longest, length)
    targets = np.empty(longest)
    taken = np.empty(longest)
    start = 0
    for length in lengths:
        for k in range(length):
            i = start + k
            target = rewards[i]
            if k + 1 < length:
                best = -np.inf
                for a in range(q.shape[1]):
                    value = q[states[i + 1], a]
                    # NaN wins, as in NumPy's max.
                    if masks[i + 1, a] and (value > best or value != value):
                        best = value
                target += gamma * best
            targets[k] = target
            taken[k] = q[states[i], actions[i]]
        for k in range(length):
            i = start + k
            q[states[i], actions[i]] = taken[k] + lr * (targets[k] - taken[k])  # eq. 3.2
        start += length
