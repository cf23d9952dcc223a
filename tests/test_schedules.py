import pytest

from routing_env.schedules import annealed_lr


def test_annealed_lr_divides_by_ten_per_period():
    assert annealed_lr(0.3, 0, 100) == 0.3
    assert annealed_lr(0.3, 99, 100) == 0.3
    assert annealed_lr(0.3, 100, 100) == pytest.approx(0.03)
    assert annealed_lr(0.3, 250, 100) == pytest.approx(0.003)
    assert annealed_lr(0.3, 10**9, None) == 0.3
