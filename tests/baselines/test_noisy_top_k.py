import math

import pytest
import torch

from routing_env.baselines import (
    ModelShapes,
    NoisyTopKGate,
    NoisyTopKNetwork,
    annealed_k,
    cv_squared,
    importance,
    smooth_load,
)
from routing_env.baselines.noisy_top_k import keep_top_k_softmax

SHAPES = ModelShapes((6,), num_tasks=3, num_outputs=2)


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def random_gate(in_dim: int = 9, modules: int = 6) -> NoisyTopKGate:
    gate = NoisyTopKGate(in_dim, modules)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in gate.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return gate


def features(count: int = 20) -> torch.Tensor:
    return torch.randn(count, 9, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_gate_keeps_exactly_k_experts_per_sample(k):
    gates, _ = random_gate()(features(), k, noisy=True)
    assert (torch.count_nonzero(gates, dim=1) == k).all()
    torch.testing.assert_close(gates.sum(dim=1), torch.ones(20))


def test_gate_is_noisy_in_training_only():
    gate = random_gate()
    x = features()
    first, _ = gate(x, 2, noisy=False)
    second, _ = gate(x, 2, noisy=False)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, keep_top_k_softmax(x @ gate.w_gate.weight.T, 2))
    noisy_one, _ = gate(x, 2, noisy=True)
    noisy_two, _ = gate(x, 2, noisy=True)
    assert not torch.equal(noisy_one, noisy_two)


def test_network_adds_no_noise_and_no_balancing_loss_in_eval_mode():
    model = NoisyTopKNetwork(SHAPES, hidden_dim=8, num_modules=4, k=2, k_annealing="none")
    with torch.no_grad():
        for gate in model.gates:
            gate.w_gate.weight.normal_(generator=torch.Generator().manual_seed(2))
            gate.w_noise.weight.fill_(3.0)  # large noise: any leak would show
    x, task = torch.randn(10, 6), torch.arange(10) % 3
    model.eval()
    first, second = model.run(x, task), model.run(x, task)
    assert torch.equal(first.logits, second.logits)
    assert first.auxiliary_loss.item() == 0.0
    model.train()
    assert not torch.equal(model(x, task), first.logits)


def test_importance_loss_equals_the_hand_computed_value():
    gates = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0]])
    values = [0.7, 1.3, 0.0]  # Importance: column sums
    mean = sum(values) / 3
    variance = sum((v - mean) ** 2 for v in values) / 3
    torch.testing.assert_close(importance(gates), torch.tensor(values))
    assert cv_squared(importance(gates)).item() == pytest.approx(variance / mean**2, rel=1e-5)


def test_smooth_load_equals_the_hand_computed_value():
    clean = torch.tensor([[1.0, 0.0, -1.0]])
    noisy = torch.tensor([[1.5, -0.5, 0.2]])
    std = torch.tensor([[1.0, 0.5, 2.0]])
    # k = 1: expert 0 is in the top 1, the best other noisy logit is 0.2; experts 1 and 2 are
    # out, they have to beat 1.5.
    expected = [phi((1.0 - 0.2) / 1.0), phi((0.0 - 1.5) / 0.5), phi((-1.0 - 1.5) / 2.0)]
    torch.testing.assert_close(smooth_load(clean, noisy, std, 1), torch.tensor(expected))
    # k = 2: experts 0 and 2 are in, the second best other logit is -0.5 for both; expert 1
    # has to beat the second largest, 0.2.
    expected = [phi((1.0 + 0.5) / 1.0), phi((0.0 - 0.2) / 0.5), phi((-1.0 + 0.5) / 2.0)]
    torch.testing.assert_close(smooth_load(clean, noisy, std, 2), torch.tensor(expected))
    values = expected
    mean = sum(values) / 3
    variance = sum((v - mean) ** 2 for v in values) / 3
    load = smooth_load(clean, noisy, std, 2)
    assert cv_squared(load).item() == pytest.approx(variance / mean**2, rel=1e-5)


def test_balanced_gates_cost_nothing():
    assert cv_squared(importance(torch.full((8, 4), 0.25))).item() == pytest.approx(0.0)
    assert cv_squared(torch.tensor([3.0, 3.0, 3.0])).item() == pytest.approx(0.0)
    dense = smooth_load(torch.randn(5, 4), torch.randn(5, 4), torch.ones(5, 4), k=4)
    assert torch.equal(dense, torch.full((4,), 5.0))
    # Balanced, not uniform: each sample picks one expert, each expert gets two samples.
    one_each = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert cv_squared(importance(one_each)).item() == 0.0
    assert cv_squared(importance(one_each[:3])).item() > 0.1


def test_network_balancing_loss_is_the_weighted_sum_of_its_layers_cvs():
    model = NoisyTopKNetwork(
        SHAPES,
        hidden_dim=8,
        num_modules=4,
        k=1,
        max_depth=1,
        k_annealing="none",
        w_importance=0.3,
        w_load=0.7,
    )
    x, task = torch.randn(10, 6), torch.arange(10) % 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        output = model.run(x, task)
        torch.manual_seed(0)
        gate_input = torch.cat([x, torch.nn.functional.one_hot(task, 3).float()], dim=1)
        gates, load = model.gates[0](gate_input, 1, noisy=True)
    torch.testing.assert_close(gates, output.gates[0])
    expected = 0.3 * cv_squared(importance(gates)) + 0.7 * cv_squared(load)
    assert expected.item() > 0
    torch.testing.assert_close(output.auxiliary_loss, expected)
    model.set_progress(0.5)  # balance annealing: half the weights
    assert model.balance_weights() == pytest.approx((0.15, 0.35))
    model.set_progress(1.0)
    assert model.run(x, task).auxiliary_loss.item() == 0.0


def test_k_annealing_over_layers_goes_from_dense_to_k():
    assert [annealed_k(10, 2, layer=d, num_layers=3) for d in range(3)] == [10, 6, 2]
    assert [annealed_k(7, 2, layer=d, num_layers=6) for d in range(6)] == [7, 6, 5, 4, 3, 2]
    assert annealed_k(10, 2, layer=0, num_layers=1) == 2


def test_k_annealing_over_training_reaches_k_at_the_anneal_fraction():
    def k_at(progress: float) -> int:
        return annealed_k(
            10,
            2,
            layer=0,
            num_layers=3,
            progress=progress,
            annealing="training",
            anneal_fraction=0.5,
        )

    assert [k_at(p) for p in (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)] == [10, 8, 6, 2, 2, 2]
    assert annealed_k(10, 2, layer=0, num_layers=3, annealing="none") == 2


def test_network_gates_follow_the_schedule():
    x, task = torch.randn(10, 6), torch.arange(10) % 3
    model = NoisyTopKNetwork(SHAPES, hidden_dim=8, num_modules=5, k=1)
    counts = [int(torch.count_nonzero(g, dim=1).max()) for g in model.run(x, task).gates]
    assert counts == [5, 3, 1]
    model = NoisyTopKNetwork(
        SHAPES, hidden_dim=8, num_modules=5, k=1, k_annealing="training", anneal_fraction=0.5
    )
    model.set_progress(0.25)
    assert [model.layer_k(d) for d in range(3)] == [3, 3, 3]
    counts = [set(torch.count_nonzero(g, dim=1).tolist()) for g in model.run(x, task).gates]
    assert counts == [{3}, {3}, {3}]


def test_diverse_experts_mix_kinds_and_keep_identity_out_of_the_logits():
    model = NoisyTopKNetwork(SHAPES, hidden_dim=8, num_modules=6, experts="diverse")
    # Layer 0 maps 6 -> 8: no identity; layer 1 maps 8 -> 8; layer 2 emits logits.
    assert model.expert_kinds[0] == ["fc", "fc-fc", "wide", "narrow", "fc", "fc-fc"]
    assert model.expert_kinds[1] == ["fc", "fc-fc", "wide", "narrow", "identity", "fc"]
    assert "identity" not in model.expert_kinds[2]
    assert isinstance(model.experts[1][4], torch.nn.Identity)
    assert model(torch.randn(4, 6), torch.tensor([0, 1, 2, 0])).shape == (4, 2)
    custom = NoisyTopKNetwork(SHAPES, hidden_dim=8, num_modules=3, experts=["wide"])
    assert custom.expert_kinds[1] == ["wide"] * 3
    with pytest.raises(ValueError, match="unknown expert kind"):
        NoisyTopKNetwork(SHAPES, hidden_dim=8, num_modules=3, experts=["conv"])


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="unknown k_annealing"):
        NoisyTopKNetwork(SHAPES, k_annealing="epochs")
    with pytest.raises(ValueError, match="anneal_fraction"):
        NoisyTopKNetwork(SHAPES, k_annealing="training", anneal_fraction=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        NoisyTopKNetwork(SHAPES, w_load=-0.1)
