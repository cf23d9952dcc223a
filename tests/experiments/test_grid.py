import pytest

from routing_env.experiments.grid import run_grid
from routing_env.experiments.runs import RunSpec


@pytest.fixture(scope="module")
def specs(small_synthetic_npz):
    return [
        RunSpec(method, small_synthetic_npz, seed=seed, budget=200, points=2)
        for method in ("wpl", "q")
        for seed in (0, 1)
    ]


def _key(record):
    return (
        record["method"],
        record["seed"],
        record["curve"]["test_accuracy"],
        record["routing_map"],
    )


@pytest.fixture(scope="module")
def sequential(specs):
    return [_key(r) for r in run_grid(specs, workers=1)]


def test_process_pool_gives_the_sequential_records_in_spec_order(specs, sequential):
    finished = []
    records = run_grid(specs, workers=2, on_result=lambda done, total, r: finished.append(done))
    assert [_key(r) for r in records] == sequential
    assert finished == [1, 2, 3, 4]


def test_local_ray_instance_gives_the_same_records(specs, sequential):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = run_grid(specs, ray_address="local")
    finally:
        ray.shutdown()
    assert [_key(r) for r in records] == sequential


def test_workers_must_be_positive(specs):
    with pytest.raises(ValueError, match="workers"):
        run_grid(specs, workers=0)
