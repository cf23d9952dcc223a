"""Weighted Policy Learner (WPL), tabular: ``001`` Algorithm 3 and section 7.4, ``000`` Algorithm
5.1, Abdallah & Lesser (JAIR 2008); DESIGN section 4, "WPL, tabular".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from agents.base import Episode
from agents.persistence import register
from agents.tabular import TabularAgent, restrict

WEIGHTINGS = ("original", "printed")


@register
@dataclass(eq=False)
class WPL(TabularAgent):
    """Weighted Policy Learner with a probability table ``pi[t, d, :]`` per (task, depth).

    For every decision ``i`` of a finished route, in the state ``s = (t, d)`` where it was made
    (``000`` Algorithm 5.1, lines 3-13)::

        R_i    = r_final + sum_{j>=i} gamma^(j-i) r_j
        Rbar_s <- (1 - lr) Rbar_s + lr R_i              # historical average return of s
        delta  = R_i - Rbar_s                           # after the update, as in the boxes
        delta *= (1 - pi_s(a_i)) if delta > 0 else pi_s(a_i)      # weighting="original"
        pi_s   <- simplex-projection(pi_s + lr onehot(a_i) delta)

    with ``simplex-projection(x) = clip(x, 0, 1) / sum(clip(x, 0, 1))``. The weighting slows
    learning as the policy nears a pure strategy, which damps the oscillation of learners that
    adapt to each other (``001`` 7.4).

    Two readings of the seeds to avoid (DESIGN 4). (1) A baseline per *action*,
    ``Rbar[t, d, a]``, cancels the taken action's own value and the router never leaves chance;
    the baseline here is per decision state. (2) The boxes of ``001`` Algorithm 3 and ``000``
    Algorithm 5.1 print the two weights swapped (negative ``delta`` scaled by ``1 - pi(a)``,
    positive by ``pi(a)``) with respect to the prose of ``001`` 7.4 and the original
    algorithm. The printed form is available as ``weighting="printed"`` for comparison only.

    Measured in self-play (:mod:`agents.matrix_games`, ``lr=0.1``):

    * Matching pennies, original weighting: started at ``P(action 0) = 0.9`` and ``0.2``, the
      two policies reach the neighbourhood of ``(1/2, 1/2)`` within about 1,000 plays and stay
      there. In 32 games of 11,000 plays, every 1,000-play window of the last 10,000 had both
      players' action frequencies within 0.038 of 1/2, the time-averaged policies were within
      0.012 of 1/2, and the policies stayed inside ``[0.16, 0.81]``: noise that narrows with a
      smaller ``lr``.
    * Matching pennies, ``weighting="printed"``: in 16 of 16 games (8 started uniform, 8 at
      0.9 / 0.2) both players became pure (``pi < 1e-3`` on one action) after 80 to 1,329
      plays, median about 300, and stayed so: one player wins every round, and the loser cannot
      move because its negative ``delta`` is scaled by ``1 - pi(a) = 0``.
    * Shapley's game, original weighting: started at ``(0.8, 0.1, 0.1)`` and
      ``(0.1, 0.1, 0.8)``, the policies settle around ``(1/3, 1/3, 1/3)`` and fluctuate there.
      The largest ``|pi(a) - 1/3|`` over both players, averaged once settled, is 0.13 at
      ``lr=0.1`` (3 games of 50,000 plays, started uniform), 0.07 at ``lr=0.03`` (4 games of
      60,000) and 0.04 at ``lr=0.01`` (4 games of 100,000): it shrinks like ``sqrt(lr)``, with
      no drift to the boundary, as expected from convergence to the equilibrium (JAIR 2008).
      REINFORCE, Q-learning and WoLF-PHC cycle near the boundary in the same game
      (``examples/matrix_games.py``).

    Masks: actions masked in a decision's ``info["action_mask"]`` keep their table entries. The
    policy that acted is ``pi_s`` restricted to the allowed actions and renormalised; the update
    runs on that restricted distribution (its ``pi(a)`` weights ``delta``) and writes it back
    scaled to the allowed actions' share of the table. Without masks this is the update above.

    Arguments: those of :class:`~agents.tabular.TabularAgent`, where ``lr`` is the policy
    learning rate ``lambda_pi`` and also the rate of the average return ``Rbar``, and:

    :param weighting: ``"original"`` (positive ``delta`` scaled by ``1 - pi(a)``, negative by
        ``pi(a)``; the default) or ``"printed"`` (the seeds' boxes: the two swapped).
    :param min_prob: lower bound of the clip in the simplex projection; ``0`` (the default) is
        the seeds' projection. With the original weighting a negative step multiplies ``pi(a)``
        by ``1 + lr * (R - Rbar)``, so an action reaches probability 0 (and is never tried
        again) only if ``lr * |R - Rbar| >= 1``, e.g. with large ``-loss`` rewards; a small
        ``min_prob`` such as ``1e-3`` keeps every action explorable then. Under the printed
        weighting actions reach 0 at any reward scale.
    """

    weighting: Literal["original", "printed"] = "original"
    min_prob: float = 0.0

    state_names = ("pi", "rbar")

    def init_learned_state(self) -> None:
        """Check ``weighting`` and ``min_prob``; ``pi`` starts uniform, ``Rbar`` at 0."""
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        if not 0.0 <= self.min_prob < 1.0 / self.num_actions:
            raise ValueError(f"min_prob must lie in [0, 1/num_actions), got {self.min_prob}")
        shape = (self.num_tasks, self.max_depth, self.num_actions)
        self.pi = np.full(shape, 1.0 / self.num_actions)
        self.rbar = np.zeros((self.num_tasks, self.max_depth))

    def behaviour(self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``pi_s`` restricted to the allowed actions and renormalised."""
        states = tasks * self.max_depth + depths  # rows of the flat table: one gather
        return restrict(self.pi.reshape(-1, self.num_actions).take(states, axis=0), masks)

    def greedy_scores(self, tasks: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``pi_s``: greedy mode takes the most probable allowed action."""
        return self.pi[tasks, depths]

    # ------------------------------------------------------------------ learning

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order: the decisions one by one, in
        the order they were made, in one compiled loop (:func:`wpl_steps`).

        :param episodes: finished routes, oldest first.
        """
        ordered = self.ordered_decisions(episodes)
        if ordered is None:
            return
        tasks, depths, actions, returns, masks = ordered
        # The kernel writes the tables in place through flat (state, action) views.
        self.pi = np.ascontiguousarray(self.pi)
        self.rbar = np.ascontiguousarray(self.rbar)
        wpl_steps(
            self.pi.reshape(-1, self.num_actions),
            self.rbar.reshape(-1),
            tasks * self.max_depth + depths,
            actions,
            np.ascontiguousarray(returns, dtype=np.float64),
            masks,
            self.lr,
            self.weighting == "original",
            self.min_prob,
        )


@numba.njit(cache=True)
def wpl_steps(
    pi: np.ndarray,
    rbar: np.ndarray,
    states: np.ndarray,
    actions: np.ndarray,
    returns: np.ndarray,
    masks: np.ndarray,
    lr: float,
    original: bool,
    min_prob: float,
) -> None:
    """``000`` Algorithm 5.1 for each decision ``i`` in turn, in place on ``pi`` (``(states,
    actions)``) and ``rbar`` (``(states,)``): decision ``i`` was made in state ``states[i]``,
    took ``actions[i]`` under the allowed actions ``masks[i]`` and returned ``returns[i]``.

    The tables are small and the decisions many (768 per 256 routes of depth 3), each
    depending on the state's previous one: compiled, a decision costs about 0.1 us, where
    NumPy's vectorised steps (one per visit rank) cost 1 us per operation. The sums follow
    NumPy's order (:func:`_numpy_sum`), so the tables match the vectorised steps' to the bit.
    """
    num_actions = pi.shape[1]
    table = np.empty(num_actions)
    row = np.empty(num_actions)
    factors = np.empty(num_actions)
    for i in range(states.shape[0]):
        state, action, ret = states[i], actions[i], returns[i]
        value = rbar[state] * (1.0 - lr)
        value += lr * ret
        rbar[state] = value  # line 5: Rbar <- (1 - lr) Rbar + lr R
        delta = ret - value  # line 7, with the updated Rbar
        allowed = 0.0
        for j in range(num_actions):
            table[j] = pi[state, j]
            factors[j] = 1.0 if masks[i, j] else 0.0
            allowed += factors[j]
            row[j] = table[j] * factors[j]
        # The policy that acted: the table restricted to the allowed actions (``restrict``).
        share = _numpy_sum(row)
        for j in range(num_actions):
            row[j] = factors[j] / allowed if share <= 0.0 else row[j] / share
        pi_a = row[action]
        if original:
            delta *= (1.0 - pi_a) if delta > 0 else pi_a  # 001 7.4 and JAIR 2008
        else:
            delta *= (1.0 - pi_a) if delta < 0 else pi_a  # lines 9-12 as printed
        row[action] = pi_a + delta * lr  # line 13: pi + lr * onehot(a) * delta ...
        # Masked entries are 0 and stay 0 through the clip unless the taken action was masked
        # (an invalid-action route) or min_prob lifts them.
        remask = min_prob > 0 or not masks[i, action]
        for j in range(num_actions):
            entry = row[j]
            if entry < min_prob:  # ... projected: clip to [min_prob, 1] ...
                entry = min_prob
            if entry > 1.0:
                entry = 1.0
            row[j] = entry * factors[j] if remask else entry
        total = _numpy_sum(row)
        if total <= 0.0:
            # A pure strategy whose only action is pushed below 0 leaves nothing to
            # normalise (the seeds do not say what happens); restart that state from
            # uniform, not NaN.
            row[:] = factors
            total = _numpy_sum(row)
        for j in range(num_actions):
            if masks[i, j]:  # ... divided by the sum, written back scaled to the allowed share
                pi[state, j] = row[j] / total * share


@numba.njit(cache=True)
def _numpy_sum(values: np.ndarray) -> float:
    """The sum of a short row in the order of NumPy's ``add.reduce`` (pairwise: eight partial
    sums from eight entries on), so that compiled and NumPy arithmetic agree to the bit."""
    count = values.shape[0]
    if count < 8:
        total = 0.0
        for j in range(count):
            total += values[j]
        return total
    partial = values[:8].copy()
    j = 8
    while j < count - count % 8:
        for k in range(8):
            partial[k] += values[j + k]
        j += 8
    total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
        (partial[4] + partial[5]) + (partial[6] + partial[7])
    )
    while j < count:
        total += values[j]
        j += 1
    return total
