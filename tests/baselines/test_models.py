import pytest
import torch
from torch.nn import functional as F

from routing_env.baselines import (
    BASELINE_NAMES,
    CrossStitchNetwork,
    ModelShapes,
    TaskSpecificNetwork,
    make_baseline,
)
from routing_env.baselines.cross_stitch import stitch_init

SHAPES = ModelShapes((6,), num_tasks=3, num_outputs=2)
OPTIONS = {"hidden_dim": 8, "max_depth": 3, "num_modules": 4}


def batch(size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 6, generator=generator)
    task = torch.arange(size) % 3
    y = (x[torch.arange(size), task] > 0).long()
    return x, task, y


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_forward_gives_one_row_of_logits_per_sample_of_mixed_tasks(name):
    model = make_baseline(name, SHAPES, **OPTIONS)
    x, task, _ = batch(7)
    output = model.run(x, task)
    assert output.logits.shape == (7, 2)
    assert torch.isfinite(output.logits).all()
    if model.gated:
        assert len(output.gates) == 3
        for gate in output.gates:
            assert gate.shape == (7, 4)
            torch.testing.assert_close(gate.sum(dim=1), torch.ones(7))
    else:
        assert output.gates is None
    # Each row depends on its own sample only: the batch equals the samples one by one.
    model.eval()
    alone = torch.cat([model(x[i : i + 1], task[i : i + 1]) for i in range(7)])
    torch.testing.assert_close(model(x, task), alone)


@pytest.mark.parametrize("name", ["task-specific-1-fc", "cross-stitch", "noisy-top-k"])
def test_image_inputs_get_the_convolutional_trunk(name):
    model = make_baseline(name, ModelShapes((1, 16, 16), 2, 5), **OPTIONS)
    assert type(model.trunk).__name__ == "SimpleConvNet"
    model.eval()
    assert model(torch.zeros(3, 1, 16, 16), torch.tensor([0, 1, 0])).shape == (3, 5)


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_one_sgd_step_changes_the_parameters_and_lowers_the_loss_on_its_batch(name):
    model = make_baseline(name, SHAPES, **OPTIONS)
    x, task, y = batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss() -> torch.Tensor:
        # The same noise draw both times: the batch and the gating are fixed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            output = model.run(x, task)
        return F.cross_entropy(output.logits, y) + output.auxiliary_loss

    before, parameters = loss(), flat(model)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert not torch.equal(flat(model), parameters)
    assert loss().item() < before.item() - 1e-4


def test_same_seed_same_parameters_and_the_global_rng_untouched():
    state = torch.random.get_rng_state()
    first = make_baseline("noisy-top-k", SHAPES, seed=3, experts="diverse", **OPTIONS)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = make_baseline("noisy-top-k", SHAPES, seed=3, experts="diverse", **OPTIONS)
    other = make_baseline("noisy-top-k", SHAPES, seed=4, experts="diverse", **OPTIONS)
    assert torch.equal(flat(first), flat(again))
    assert not torch.equal(flat(first), flat(other))


def test_task_specific_all_fc_keeps_other_tasks_parameters_out_of_a_tasks_gradient():
    model = make_baseline("task-specific-all-fc", SHAPES, **OPTIONS)
    x, task, y = batch()
    rows = task == 0
    F.cross_entropy(model(x[rows], task[rows]), y[rows]).backward()
    for layer in model.layers:
        assert layer.weight.grad[0].abs().sum() > 0
        assert torch.count_nonzero(layer.weight.grad[1:]) == 0
        assert torch.count_nonzero(layer.bias.grad[1:]) == 0


def test_task_specific_1_fc_shares_all_but_the_last_layer():
    model = make_baseline("task-specific-1-fc", SHAPES, **OPTIONS)
    assert model.first_specific == 2
    x, task, y = batch()
    rows = task == 2
    F.cross_entropy(model(x[rows], task[rows]), y[rows]).backward()
    assert model.layers[0].weight.grad.abs().sum() > 0  # shared: every task trains it
    assert torch.count_nonzero(model.layers[2].weight.grad[:2]) == 0
    assert model.layers[2].weight.grad[2].abs().sum() > 0


def test_cross_stitch_with_identity_stitches_is_independent_columns():
    stitched = CrossStitchNetwork(SHAPES, hidden_dim=8, max_depth=3, self_weight=1.0, seed=5)
    columns = TaskSpecificNetwork(SHAPES, hidden_dim=8, max_depth=3, task_specific_layers=3)
    columns.load_state_dict(
        {
            f"layers.{d}.{p}": getattr(stitched.columns[d], p)
            for d in range(3)
            for p in ("weight", "bias")
        }
    )
    x, task, _ = batch()
    torch.testing.assert_close(stitched(x, task), columns(x, task))
    # The default start mixes the columns: the outputs move away from independent columns.
    mixed = CrossStitchNetwork(SHAPES, hidden_dim=8, max_depth=3, seed=5)
    assert not torch.allclose(mixed(x, task), columns(x, task))


def test_stitch_initialisation_is_near_identity_with_rows_summing_to_one():
    matrix = stitch_init(3, 0.9)
    torch.testing.assert_close(matrix.diagonal(), torch.full((3,), 0.9))
    torch.testing.assert_close(matrix[0, 1:], torch.full((2,), 0.05))
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(3))


def test_cross_stitch_units_learn_and_mix_gradients_across_columns():
    model = make_baseline("cross-stitch", SHAPES, **OPTIONS)
    x, task, y = batch()
    rows = task == 0
    F.cross_entropy(model(x[rows], task[rows]), y[rows]).backward()
    assert model.stitches[0].grad.abs().sum() > 0
    # Task 1's first layer feeds task 0's column through the stitch: it gets a gradient too.
    assert model.columns[0].weight.grad[1].abs().sum() > 0


@pytest.mark.parametrize("gate", ["task", "shared", "task_activation"])
def test_soft_mixture_starts_uniform_and_its_gate_learns(gate):
    model = make_baseline("soft-mixture-all-fc", SHAPES, gate=gate, **OPTIONS)
    x, task, y = batch()
    output = model.run(x, task)
    for weights in output.gates:
        torch.testing.assert_close(weights, torch.full((12, 4), 0.25))
    F.cross_entropy(output.logits, y).backward()
    gate_parameters = [p for n, p in model.named_parameters() if n.startswith("gate")]
    assert gate_parameters and all(p.grad.abs().sum() > 0 for p in gate_parameters)


def test_soft_mixture_output_is_the_gate_weighted_sum_of_the_modules():
    model = make_baseline("soft-mixture-all-fc", SHAPES, **OPTIONS)
    with torch.no_grad():
        model.gate_logits.normal_(generator=torch.Generator().manual_seed(0))
    x, task, _ = batch(3)
    h = x
    for depth, bank in enumerate(model.banks):
        weights = torch.softmax(model.gate_logits[depth, task], dim=1)
        modules = [h @ bank.weight[m] + bank.bias[m] for m in range(4)]
        if depth < 2:
            modules = [torch.relu(out) for out in modules]
        h = sum(weights[:, m : m + 1] * modules[m] for m in range(4))
    torch.testing.assert_close(model(x, task), h)


def test_bad_arguments_raise_value_errors_that_name_the_problem():
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("routing-all-fc", SHAPES)
    with pytest.raises(ValueError, match="k=5 exceeds num_modules=4"):
        make_baseline("noisy-top-k", SHAPES, k=5, **OPTIONS)
    with pytest.raises(ValueError, match="hidden_dim must be a positive integer"):
        make_baseline("cross-stitch", SHAPES, hidden_dim=0)
    with pytest.raises(ValueError, match="num_modules must be a positive integer"):
        make_baseline("soft-mixture-all-fc", SHAPES, num_modules=-1)
    with pytest.raises(ValueError, match="takes no option gate"):
        make_baseline("cross-stitch", SHAPES, gate="task")
    with pytest.raises(ValueError, match="unknown gate"):
        make_baseline("soft-mixture-all-fc", SHAPES, gate="activation")
    with pytest.raises(ValueError, match="num_tasks must be a positive integer"):
        ModelShapes((6,), 0, 2)
    assert ModelShapes([6], 3, 2) == SHAPES
    model = make_baseline("task-specific-1-fc", SHAPES, **OPTIONS)
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        model(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="task must have shape"):
        model(torch.zeros(4, 6), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="task ids must lie in 0..2"):
        model(torch.zeros(2, 6), torch.tensor([0, 3]))
