"""Weighted Policy Learner (WPL), tabular: ``001`` Algorithm 3 and section 7.4, ``000`` Algorithm
5.1, Abdallah & Lesser (JAIR 2008); DESIGN section 4, "WPL, tabular".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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
        """Same result as :meth:`learn` on each route in order.

        A decision reads and writes only its own state's ``pi`` and ``Rbar``, so the ``k``-th
        visits of all the states are applied together (:meth:`~TabularAgent.visits`): one
        vectorised step of ``000`` Algorithm 5.1 per group, each line on all of the group's
        states at once, with the arithmetic of one decision at a time.

        :param episodes: finished routes, oldest first.
        """
        grouped = self.grouped_decisions(episodes)
        if grouped is None:
            return
        tasks, depths, actions, returns, masks, bounds = grouped
        # The updates read and write the tables through flat (state, action) views.
        self.pi = np.ascontiguousarray(self.pi)
        self.rbar = np.ascontiguousarray(self.rbar)
        rbar_table = self.rbar.reshape(-1)
        states = tasks * self.max_depth + depths
        num_actions = self.num_actions
        # Per decision, once for the batch: the masks as factors (x * 1.0 is x, as x * True)
        # and the entries they keep, lr * R, the flat indices of the decision's table row, and
        # of its action among its group's rows.
        factors = masks.astype(np.float64)
        kept = ~masks
        scaled = self.lr * returns
        entries = states[:, None] * num_actions + np.arange(num_actions)
        row = np.arange(len(states))
        taken = row * num_actions + actions
        # Masked entries of the acting policy are 0 and stay 0 through the clip, unless an
        # action was masked (an invalid-action route) or min_prob lifts them.
        remask = self.min_prob > 0 or not masks.reshape(-1).take(taken).all()
        if len(bounds) > 2:  # the actions' entries counted from their group's first row
            taken -= np.repeat(bounds[:-1] * num_actions, bounds[1:] - bounds[:-1])
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            now = slice(start, stop)
            self._update(
                rbar_table,
                states[now],
                returns[now],
                scaled[now],
                factors[now],
                kept[now],
                entries[now],
                taken[now],
                remask,
            )

    def _update(
        self,
        rbar_table: np.ndarray,
        states: np.ndarray,
        returns: np.ndarray,
        scaled: np.ndarray,
        factors: np.ndarray,
        kept: np.ndarray,
        entries: np.ndarray,
        taken: np.ndarray,
        remask: bool,
    ) -> None:
        """One WPL step in each of several distinct states: ``scaled = lr * returns``,
        ``factors`` the masks as floats and ``kept`` their complement, ``entries`` the states'
        rows in the flat ``pi``, ``taken`` the flat index of each row's action in a
        ``(rows, actions)`` array, ``remask`` whether masked entries must be zeroed again
        after the clip."""
        pi_flat = self.pi.reshape(-1)
        rbar = rbar_table.take(states)
        rbar *= 1.0 - self.lr
        rbar += scaled  # Alg. 5.1 line 5: (1 - lr) Rbar + lr R
        rbar_table.put(states, rbar)
        delta = np.subtract(returns, rbar, out=rbar)  # line 7, with the updated Rbar
        table = pi_flat.take(entries)
        # The policy that acted: the table restricted to the allowed actions (as `restrict`).
        pi = table * factors
        allowed_share = np.add.reduce(pi, axis=1, keepdims=True)
        if np.minimum.reduce(allowed_share, axis=None) > 0:  # NaN fails, as in (share > 0).all()
            pi /= allowed_share
        else:
            pi = restrict(table, ~kept)
        pi_a = pi.take(taken)
        if self.weighting == "original":
            delta *= np.where(delta > 0, 1.0 - pi_a, pi_a)  # 001 7.4 and JAIR 2008
        else:
            delta *= np.where(delta < 0, 1.0 - pi_a, pi_a)  # lines 9-12 as printed
        delta *= self.lr
        pi_a += delta  # line 13: pi + lr * onehot(a) * delta ...
        pi.put(taken, pi_a)
        np.maximum(pi, self.min_prob, out=pi)  # ... projected: clip to [0, 1] ...
        np.minimum(pi, 1.0, out=pi)
        if remask:
            pi *= factors
        total = np.add.reduce(pi, axis=1, keepdims=True)
        if np.fmin.reduce(total, axis=None) <= 0:  # fmin skips NaN, as (total <= 0).any()
            # A pure strategy whose only action is pushed below 0 leaves nothing to
            # normalise (the seeds do not say what happens); restart that state from
            # uniform, not NaN.
            empty = total[:, 0] <= 0
            pi[empty] = factors[empty]
            total = np.add.reduce(pi, axis=1, keepdims=True)
        pi /= total  # ... and divide by the sum
        pi *= allowed_share  # written back scaled to the allowed actions' share
        np.copyto(pi, table, where=kept)
        pi_flat.put(entries, pi)
