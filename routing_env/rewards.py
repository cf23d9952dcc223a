"""Rewards of the routing MDP: the final reward and the collaboration reward.

Final reward (``000`` 3.1.2.1, ``001`` 3.1.1): ``+1`` for a correct prediction, ``-1`` for a
wrong one (``"correct"``), or the negative loss ``-L(y_hat, y)`` (``"neg_loss"``), the choice for
regression.

Collaboration reward (``001`` 3.1.1, ``000`` 3.1.2.2): after choosing module ``a`` the agent
receives ``rho / T * C(a)``, where ``C(a)`` is the fraction of the last ``window`` decisions at
that layer that chose ``a`` and ``T`` normalises by the route length so that the sum over a route
stays within ``|rho|``. ``rho > 0`` rewards sharing popular modules, ``rho < 0`` rewards
diversity (Cases et al., 2019). The seeds also describe a variant with the router's average
probability of ``a``; the environment cannot see the agent's probabilities, so it implements
the frequency form, which ``001`` found equivalent.
"""

from __future__ import annotations

import numpy as np

FINAL_REWARDS = ("correct", "neg_loss")


def final_reward(kind: str, correct: bool, loss: float) -> float:
    """The reward paid when a route ends (see the module docstring)."""
    if kind == "correct":
        return 1.0 if correct else -1.0
    return -loss


def final_rewards(kind: str, correct: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """:func:`final_reward` of many finished routes at once."""
    if kind == "correct":
        return np.where(correct, 1.0, -1.0)
    return -loss


def invalid_action_reward(kind: str, invalid_action_loss: float) -> float:
    """The final reward of a route ended by a masked action: the worst outcome, a wrong
    prediction (``-1``) or the loss charged for an invalid action (``"neg_loss"``)."""
    return -1.0 if kind == "correct" else -invalid_action_loss


class SelectionHistory:
    """Sliding window of the modules chosen at each layer, for the collaboration reward.

    Args:
        num_layers: layers with their own module set (1 in recurrent routing: one bank).
        num_actions: size of the action space (the extra action is counted but never paid).
        window: number of most recent decisions per layer that ``C(a)`` is computed over.
    """

    def __init__(self, num_layers: int, num_actions: int, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"collaboration window must be a positive integer, got {window}")
        self.window = int(window)
        self._recent = np.full((num_layers, self.window), -1, dtype=np.int64)
        self._counts = np.zeros((num_layers, num_actions), dtype=np.int64)
        self._next = np.zeros(num_layers, dtype=np.int64)
        self._filled = np.zeros(num_layers, dtype=np.int64)

    def frequency(self, layer: int, action: int) -> float:
        """``C(a)``: share of the window at ``layer`` that chose ``action`` (0 when empty)."""
        filled = self._filled[layer]
        return float(self._counts[layer, action]) / filled if filled else 0.0

    def record(self, layer: int, action: int) -> None:
        """Add one decision to the window of ``layer``, dropping the oldest when full."""
        slot = self._next[layer]
        oldest = self._recent[layer, slot]
        if oldest >= 0:
            self._counts[layer, oldest] -= 1
        else:
            self._filled[layer] += 1
        self._recent[layer, slot] = action
        self._counts[layer, action] += 1
        self._next[layer] = (slot + 1) % self.window

    def frequencies(self, layers: int | np.ndarray, actions: np.ndarray) -> np.ndarray:
        """:meth:`frequency` of many decisions, read from the window as it stands."""
        totals = self._filled[layers]
        return np.where(totals > 0, self._counts[layers, actions] / np.maximum(totals, 1), 0.0)

    def record_many(self, layers: int | np.ndarray, actions: np.ndarray) -> None:
        """:meth:`record` of each decision in order, vectorised.

        The decisions go into the ring as slices, each slot evicting what it held; decisions
        that a later one of the same call would overwrite (more than ``window`` of them) are
        counted in and out at once.
        """
        if isinstance(layers, int):
            groups = [(layers, actions)]
        else:
            groups = [(layer, actions[layers == layer]) for layer in np.unique(layers).tolist()]
        window, counts = self.window, self._counts
        num_actions = counts.shape[1]
        for layer, chosen in groups:
            counts[layer] += np.bincount(chosen, minlength=num_actions)
            position = int(self._next[layer])
            start = max(0, len(chosen) - window)  # earlier ones are evicted within this call
            if start:
                counts[layer] -= np.bincount(chosen[:start], minlength=num_actions)
                position = (position + start) % window
            remaining = chosen[start:]
            while len(remaining):  # at most two slices per lap of the ring
                take = min(len(remaining), window - position)
                ring = self._recent[layer, position : position + take]
                if self._filled[layer] < window:
                    evicted = ring[ring >= 0]
                    self._filled[layer] += take - len(evicted)
                else:
                    evicted = ring
                counts[layer] -= np.bincount(evicted, minlength=num_actions)
                ring[:] = remaining[:take]
                remaining = remaining[take:]
                position = (position + take) % window
            self._next[layer] = position

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """The window's contents (for checkpoints)."""
        return {
            "window": self.window,
            "recent": self._recent.copy(),
            "counts": self._counts.copy(),
            "next": self._next.copy(),
            "filled": self._filled.copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray | int]) -> None:
        """Continue from a :meth:`state_dict` of a window of the same size."""
        if int(state["window"]) != self.window or np.shape(state["counts"]) != self._counts.shape:
            raise ValueError("the saved selection window has another size than this one")
        self._recent[:] = state["recent"]
        self._counts[:] = state["counts"]
        self._next[:] = state["next"]
        self._filled[:] = state["filled"]

    def clear(self) -> None:
        """Forget every recorded decision."""
        self._recent.fill(-1)
        self._counts.fill(0)
        self._next.fill(0)
        self._filled.fill(0)
