"""The learning-rate annealing of ``001`` section 4, shared by the routed modules and the
non-routed baselines: "The learning rate is initialized to 10^-2 and annealed by dividing by 10
every 20 epochs". Here the initial rate is the run's own (``module_lr``), and the period is
counted in training samples (routes), so that the routed network, which does not know what an
epoch of its data is, and the baselines anneal alike: an epoch is a pass over the training split,
``20 * len(train)`` samples in ``001``'s setting.
"""

from __future__ import annotations

#: ``001``'s factor: the learning rate is divided by 10 at the end of every period.
LR_ANNEAL_FACTOR = 0.1


def annealed_lr(lr: float, trained: int, every: int | None) -> float:
    """The learning rate after ``trained`` samples: ``lr * 0.1 ** (trained // every)``
    (``lr`` itself when ``every`` is ``None``).

    Args:
        lr: the initial learning rate.
        trained: samples trained on before the step about to be taken.
        every: samples per period, or ``None`` for a constant rate.
    """
    if every is None:
        return lr
    return lr * LR_ANNEAL_FACTOR ** (trained // every)
