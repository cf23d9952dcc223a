import math

import numpy as np
import pytest
import torch

from routing_env.baselines import (
    evaluate_baseline,
    make_baseline,
    train_baseline,
    training_order,
)
from routing_env.datasets import load_suite
from routing_env.env import RoutingEnv

SMALL = {"hidden_dim": 8, "num_modules": 4, "max_depth": 2}


def test_training_order_is_the_order_routing_env_draws_for_the_seed(small_dataset):
    env = RoutingEnv(dataset=small_dataset)
    drawn = [env.reset(seed=7)[1]["sample_index"]]
    drawn += [env.reset()[1]["sample_index"] for _ in range(149)]  # 2.5 passes of 60
    assert training_order(60, 150, seed=7).tolist() == drawn
    assert sorted(training_order(60, 60, seed=7).tolist()) == list(range(60))
    assert training_order(60, 150, seed=8).tolist() != drawn


@pytest.mark.parametrize("name", ["cross-stitch", "noisy-top-k"])
def test_same_seed_same_history_and_the_callers_rng_untouched(small_dataset, name):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = train_baseline(name, small_dataset, 200, seed=3, eval_every=50, **SMALL)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = train_baseline(name, small_dataset, 200, seed=3, eval_every=50, **SMALL)
    other = train_baseline(name, small_dataset, 200, seed=4, eval_every=50, **SMALL)
    for key in ("train_loss", "train_accuracy", "test_accuracy", "per_task_accuracy"):
        assert first[key] == second[key]
    assert first["train_loss"] != other["train_loss"]


def test_history_has_the_agents_train_shape(small_dataset):
    history = train_baseline("soft-mixture-all-fc", small_dataset, 100, eval_every=32, **SMALL)
    # Evaluations after the first batch of 16 that reaches 32, 64, 96 samples, and at the end.
    assert history["episode"] == [32, 64, 96, 100]
    for key in ("train_accuracy", "train_loss", "test_accuracy", "per_task_accuracy"):
        assert len(history[key]) == 4
    assert all(len(row) == 3 for row in history["per_task_accuracy"])
    assert history["final"] == {
        "test_accuracy": history["test_accuracy"][-1],
        "per_task_accuracy": history["per_task_accuracy"][-1],
        "route_entropy": history["route_entropy"][-1],
        "modules_used": history["modules_used"][-1],
    }
    assert history["episodes"] == 100 and history["seconds"] > 0
    assert history["baseline"] == "soft-mixture-all-fc"
    model = make_baseline("soft-mixture-all-fc", small_dataset, **SMALL)
    assert history["parameters"] == sum(p.numel() for p in model.parameters())
    # Default: every samples // 10 = 5 samples, at most once per batch of 16.
    assert train_baseline("noisy-top-k", small_dataset, 50, **SMALL)["episode"] == [16, 32, 48, 50]


def test_evaluation_statistics_of_gated_and_dense_models(small_dataset):
    mixture = make_baseline("soft-mixture-all-fc", small_dataset, **SMALL)
    result = evaluate_baseline(mixture, small_dataset)
    # Zero gate logits: a uniform mixture, every module used, entropy log(num_modules).
    assert result["route_entropy"] == pytest.approx(math.log(4))
    assert result["modules_used"] == 2 * 4
    with torch.no_grad():
        mixture.gate_logits[:, :, 0] = 50.0  # every task puts all its weight on module 0
    result = evaluate_baseline(mixture, small_dataset)
    assert result["route_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert result["modules_used"] == 2
    dense = make_baseline("task-specific-all-fc", small_dataset, **SMALL)
    result = evaluate_baseline(dense, small_dataset)
    assert result["route_entropy"] is None and result["modules_used"] is None
    test = small_dataset.test
    logits = dense(torch.as_tensor(test.x), torch.as_tensor(test.task))
    correct = logits.argmax(dim=1).numpy() == test.y
    assert result["accuracy"] == pytest.approx(correct.mean())
    assert result["per_task_accuracy"][1] == pytest.approx(correct[test.task == 1].mean())


def test_a_given_model_is_trained_in_place(small_dataset):
    model = make_baseline("task-specific-1-fc", small_dataset, **SMALL)
    before = [p.detach().clone() for p in model.parameters()]
    train_baseline(model, small_dataset, 64)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="model options"):
        train_baseline(model, small_dataset, 64, gate="task")


def test_bad_training_arguments_raise(small_dataset):
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        train_baseline("cross-stitch", small_dataset, 0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train_baseline("cross-stitch", small_dataset, 10, optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown baseline"):
        train_baseline("routing-all-fc", small_dataset, 10)
    with pytest.raises(ValueError, match="lr must be positive"):
        train_baseline("cross-stitch", small_dataset, 10, lr=0.0)


def test_task_specific_all_fc_beats_the_majority_rate_on_digits_mtl():
    data = load_suite("digits-mtl")
    majority = max(np.mean(data.test.y == 0), np.mean(data.test.y == 1))
    assert majority == pytest.approx(0.9, abs=0.001)
    history = train_baseline("task-specific-all-fc", data, 8000, seed=0, eval_every=4000)
    assert history["final"]["test_accuracy"] > majority + 0.04
    assert history["test_accuracy"][-1] >= history["test_accuracy"][0] - 0.01


def test_the_learning_rate_is_divided_by_ten_every_lr_anneal_every_samples(small_dataset):
    steps = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(self.param_groups[0]["lr"])
            return super().step(closure)

    def recording(parameters, lr):
        return Recording(parameters, lr=lr)

    args = {"batch_size": 16, "lr": 0.3, "optimizer": recording, **SMALL}
    train_baseline("task-specific-1-fc", small_dataset, 80, lr_anneal_every=32, **args)
    assert steps == pytest.approx([0.3, 0.3, 0.03, 0.03, 0.003])
    steps.clear()
    train_baseline("task-specific-1-fc", small_dataset, 48, **args)
    assert steps == [0.3, 0.3, 0.3]
    with pytest.raises(ValueError, match="lr_anneal_every must be a positive integer"):
        train_baseline("cross-stitch", small_dataset, 10, lr_anneal_every=0)
