"""Weighted Policy Learner (WPL), tabular: ``001`` Algorithm 3 and section 7.4, ``000`` Algorithm
5.1, Abdallah & Lesser (JAIR 2008); DESIGN section 4, "WPL, tabular".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from agents.base import Agent, Episode
from agents.persistence import register
from agents.tabular import (
    as_masks,
    check_indices,
    decision_masks,
    decisions,
    restrict,
    sample,
    table_non_greedy,
    visit_groups,
)

WEIGHTINGS = ("original", "printed")


@register
class WPL(Agent):
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

    :param num_tasks: number of task ids (the table's first axis).
    :param max_depth: number of decisions per route (depths ``0 .. max_depth - 1``).
    :param num_actions: size of the action space (modules plus PASS / stop).
    :param lr: policy learning rate ``lambda_pi``, also the rate of the average return ``Rbar``.
    :param seed: seed of the agent's own random stream.
    :param gamma: discount of the intermediate rewards in the return; the final reward is not
        discounted (``001`` Algorithm 3).
    :param weighting: ``"original"`` (positive ``delta`` scaled by ``1 - pi(a)``, negative by
        ``pi(a)``; the default) or ``"printed"`` (the seeds' boxes: the two swapped).
    :param min_prob: lower bound of the clip in the simplex projection; ``0`` (the default) is
        the seeds' projection. With the original weighting a negative step multiplies ``pi(a)``
        by ``1 + lr * (R - Rbar)``, so an action reaches probability 0 (and is never tried
        again) only if ``lr * |R - Rbar| >= 1``, e.g. with large ``-loss`` rewards; a small
        ``min_prob`` such as ``1e-3`` keeps every action explorable then. Under the printed
        weighting actions reach 0 at any reward scale.
    """

    state_names = ("pi", "rbar")

    def __init__(
        self,
        num_tasks: int,
        max_depth: int,
        num_actions: int,
        lr: float = 0.1,
        seed: int | None = None,
        gamma: float = 1.0,
        weighting: Literal["original", "printed"] = "original",
        min_prob: float = 0.0,
    ) -> None:
        super().__init__(seed)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
        if not 0.0 <= min_prob < 1.0 / num_actions:
            raise ValueError(f"min_prob must lie in [0, 1/num_actions), got {min_prob}")
        self._remember(
            num_tasks=num_tasks,
            max_depth=max_depth,
            num_actions=num_actions,
            lr=lr,
            gamma=gamma,
            weighting=weighting,
            min_prob=min_prob,
        )
        self.num_tasks, self.max_depth, self.num_actions = num_tasks, max_depth, num_actions
        self.lr, self.gamma, self.weighting, self.min_prob = lr, gamma, weighting, min_prob
        self.pi = np.full((num_tasks, max_depth, num_actions), 1.0 / num_actions)
        self.rbar = np.zeros((num_tasks, max_depth))

    # ------------------------------------------------------------------ acting

    def policy(self, task: int, depth: int, mask: np.ndarray | None = None) -> np.ndarray:
        """The distribution :meth:`act` samples from in state ``(task, depth)``.

        :param task: task id.
        :param depth: decision depth.
        :param mask: allowed actions (default: all).
        :return: probabilities, shape ``(num_actions,)``.
        """
        masks = as_masks(np.ones(self.num_actions) if mask is None else mask)
        return self._probabilities(np.array([task]), np.array([depth]), masks)[0]

    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        """Sample an allowed action; the most probable one (lowest index on ties) when greedy.

        :param obs: the observation; only ``obs["task"]`` and ``obs["depth"]`` are used.
        :param info: holds ``action_mask``.
        :return: the action.
        """
        batch = {"task": np.array([obs["task"]]), "depth": np.array([obs["depth"]])}
        return int(self.act_batch(batch, info["action_mask"])[0])

    def act_batch(self, obs: Mapping[str, np.ndarray], masks: np.ndarray) -> np.ndarray:
        """One action per row, as :meth:`act`, without a loop over the rows.

        :param obs: stacked observations; only ``obs["task"]`` and ``obs["depth"]`` (shape
            ``(B,)``) are used.
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :return: actions, shape ``(B,)``.
        """
        probabilities = self._probabilities(
            np.asarray(obs["task"]), np.asarray(obs["depth"]), as_masks(masks)
        )
        if self.greedy:
            return np.argmax(probabilities, axis=1)
        return sample(self.rng, probabilities)

    def _probabilities(
        self, tasks: np.ndarray, depths: np.ndarray, masks: np.ndarray
    ) -> np.ndarray:
        check_indices((tasks, depths), self.pi.shape[:2])
        return restrict(self.pi[tasks, depths], masks)

    def exploratory(
        self, obs: Mapping[str, np.ndarray], masks: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Whether each action was taken non-greedily (``000`` 7.4.2): below the largest
        probability of the policy in its state.

        :param obs: stacked observations (``task``, ``depth``).
        :param masks: allowed actions, shape ``(B, num_actions)``.
        :param actions: the actions taken, shape ``(B,)``.
        :return: booleans, shape ``(B,)``.
        """
        return table_non_greedy(self.pi, obs, masks, actions)

    # ------------------------------------------------------------------ learning

    def learn(self, episode: Episode) -> None:
        """Apply the WPL update to every decision of one finished route.

        :param episode: the route; its ``infos`` may carry each decision's ``action_mask``.
        """
        self.learn_batch([episode])

    def learn_batch(self, episodes: Sequence[Episode]) -> None:
        """Same result as :meth:`learn` on each route in order.

        A decision reads and writes only its own state's ``pi`` and ``Rbar``, so the ``k``-th
        visits of all the states are independent: they are applied together, ``k`` by ``k``.

        :param episodes: finished routes, oldest first.
        """
        if not episodes:
            return
        tasks, depths, actions, returns = decisions(episodes, self.gamma)
        masks = decision_masks(episodes, self.num_actions)
        check_indices((tasks, depths, actions), self.pi.shape)
        states = tasks * self.max_depth + depths
        # The updates read and write the tables through flat (state, action) views.
        self.pi = np.ascontiguousarray(self.pi)
        self.rbar = np.ascontiguousarray(self.rbar)
        pi_table = self.pi.reshape(-1, self.num_actions)
        rbar_table = self.rbar.reshape(-1)
        for now in visit_groups(states):
            self._update(pi_table, rbar_table, states[now], actions[now], returns[now], masks[now])

    def _update(
        self,
        pi_table: np.ndarray,
        rbar_table: np.ndarray,
        states: np.ndarray,
        actions: np.ndarray,
        returns: np.ndarray,
        masks: np.ndarray,
    ) -> None:
        """One WPL step in each of several distinct states (rows of the flat tables)."""
        rows = np.arange(len(actions))
        rbar = (1.0 - self.lr) * rbar_table[states] + self.lr * returns  # Alg. 5.1 line 5
        rbar_table[states] = rbar
        delta = returns - rbar  # line 7, with the updated Rbar
        table = pi_table[states]
        # The policy that acted: the table restricted to the allowed actions (as `restrict`).
        allowed = table * masks
        allowed_share = allowed.sum(axis=1, keepdims=True)
        if (allowed_share > 0).all():
            pi = allowed / allowed_share
        else:
            pi = restrict(table, masks)
        pi_a = pi[rows, actions]
        if self.weighting == "original":
            delta *= np.where(delta > 0, 1.0 - pi_a, pi_a)  # 001 7.4 and JAIR 2008
        else:
            delta *= np.where(delta < 0, 1.0 - pi_a, pi_a)  # lines 9-12 as printed
        pi[rows, actions] += self.lr * delta  # line 13: pi + lr * onehot(a) * delta ...
        np.maximum(pi, self.min_prob, out=pi)  # ... projected: clip to [0, 1] ...
        np.minimum(pi, 1.0, out=pi)
        pi *= masks
        total = pi.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        if empty.any():
            # A pure strategy whose only action is pushed below 0 leaves nothing to
            # normalise (the seeds do not say what happens); restart that state from
            # uniform, not NaN.
            pi[empty] = masks[empty]
            total = pi.sum(axis=1, keepdims=True)
        pi /= total  # ... and divide by the sum
        pi_table[states] = np.where(masks, pi * allowed_share, table)
