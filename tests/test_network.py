import contextlib

import numpy as np
import pytest
import torch

from routing_env.network import RoutedNetwork, compiled, reference_update
from routing_env.network import rows as row_kernel
from routing_env.network.kernel import GroupLayout


def make(**kwargs) -> RoutedNetwork:
    options = {"num_modules": 4, "max_depth": 3, "hidden_dim": 8, "seed": 0}
    options.update(kwargs)
    return RoutedNetwork((6,), 3, 2, **options)


def flat(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


def test_layered_shapes_and_masks():
    net = make()
    assert net.in_dims == [6, 8, 8] and net.out_dims == [8, 8, 2]
    assert net.num_actions == 5 and net.extra_action == 4
    assert net.activation_dim == 8
    # PASS only where input and output sizes match: not at layer 0 (6 -> 8) nor the logits.
    assert net.action_mask(0).tolist() == [1, 1, 1, 1, 0]
    assert net.action_mask(1).tolist() == [1, 1, 1, 1, 1]
    assert net.action_mask(2).tolist() == [1, 1, 1, 1, 0]
    assert net.action_mask(3).tolist() == [0, 0, 0, 0, 0]


def test_recurrent_projects_and_allows_stop_everywhere():
    net = make(routing="recurrent", readout="per_task")
    assert net.projection is not None and len(net.readout) == 3
    for depth in range(3):
        assert net.action_mask(depth).tolist() == [1, 1, 1, 1, 1]


def test_grouped_apply_equals_applying_each_sample_alone():
    net = make()
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(0))
    task = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    routes = torch.tensor(
        [[0, 1, 2], [1, 4, 0], [3, 4, 3], [0, 0, 0], [2, 1, 1], [1, 2, 3], [3, 3, 3]]
    )
    together = net(x, task, routes)
    for i in range(7):
        h = net.embed(x[i : i + 1])
        for depth in range(3):
            h = net.apply_one(h, depth, int(routes[i, depth]))
        torch.testing.assert_close(together[i : i + 1], net.outputs(h, task[i : i + 1]))


def test_recurrent_routes_padded_with_minus_one_stop_early():
    net = make(routing="recurrent", readout="per_task")
    x = torch.randn(2, 6)
    task = torch.tensor([1, 2])
    routes = torch.tensor([[2, 4, -1], [2, -1, -1]])
    out = net(x, task, routes)
    h = net.apply_one(net.embed(x), 0, 2)
    torch.testing.assert_close(out[0:1], net.readout[1](h[0:1]))
    torch.testing.assert_close(out[1:2], net.readout[2](h[1:2]))


def test_same_routes_give_same_parameters_however_they_arrive():
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    task = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 2, (12,), generator=torch.Generator().manual_seed(3))
    routes = torch.randint(0, 4, (12, 3), generator=torch.Generator().manual_seed(4))
    one_by_one, at_once = make(module_batch_size=5), make(module_batch_size=5)
    for i in range(12):
        one_by_one.add_routes(x[i : i + 1], task[i : i + 1], y[i : i + 1], routes[i : i + 1])
    assert at_once.add_routes(x, task, y, routes) == 2
    assert one_by_one.num_updates == at_once.num_updates == 2
    assert one_by_one.pending_routes == at_once.pending_routes == 2
    torch.testing.assert_close(flat(one_by_one), flat(at_once))


@pytest.mark.parametrize("kernel", ["compiled", "rows"])
@pytest.mark.parametrize("case", ["plain", "annealed", "weighted", "pass", "hooked"])
def test_many_updates_at_once_equal_one_update_after_the_other(case, kernel):
    # add_routes runs the updates of one arrival with the host's work done once
    # (ModuleTrainer._update_rows_in_order): the same numbers, bit for bit, as update() per batch.
    with kernel_for_every_batch(kernel):
        updates_at_once_and_one_by_one(case)


def updates_at_once_and_one_by_one(case: str) -> None:
    generator = torch.Generator().manual_seed(7)
    count, size = 40, 8
    x = torch.randn(count, 6, generator=generator)
    task = torch.randint(0, 3, (count,), generator=generator)
    y = torch.randint(0, 2, (count,), generator=generator)
    high = 5 if case == "pass" else 4  # 4 is PASS (the identity slot) in this square network
    routes = torch.randint(0, high, (count, 3), generator=generator)
    routes[:, 2] %= 4  # the last depth changes the size: a module there, no PASS
    if case == "pass":
        routes[:3, :2] = 4  # PASS from the start: the identity slot on a raw input
    weights = torch.rand(count, generator=generator) if case == "weighted" else None
    options = {"module_batch_size": size, "hidden_dim": 6}
    if case == "annealed":
        options["module_lr_anneal_every"] = 2 * size  # the lr changes inside the arrival
    at_once, one_by_one = make(**options), make(**options)
    calls = []
    if case == "hooked":
        at_once.register_update_hook(lambda network: calls.append(network.num_updates))
    assert at_once.add_routes(x, task, y, routes, weights=weights) == count // size
    for start in range(0, count, size):
        part = slice(start, start + size)
        one_by_one.update(
            x[part], task[part], y[part], routes[part], None if weights is None else weights[part]
        )
    assert at_once.num_updates == one_by_one.num_updates == count // size
    assert torch.equal(flat(at_once), flat(one_by_one))
    assert at_once.optimizer.param_groups[0]["lr"] == one_by_one.optimizer.param_groups[0]["lr"]
    if case == "annealed":
        assert at_once.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * at_once.module_lr)
    if case == "hooked":
        assert calls == [1, 2, 3, 4, 5]


def test_sgd_step_matches_hand_computed_update():
    net = make(module_batch_size=1, module_lr=0.5)
    x, task, y = torch.randn(1, 6), torch.tensor([0]), torch.tensor([1])
    route = torch.tensor([[1, 2, 3]])
    expected = {}
    loss = net.per_sample_loss(net(x, task, route), y).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    for (name, p), g in zip(net.named_parameters(), grads, strict=True):
        expected[name] = p.detach() - 0.5 * (g if g is not None else 0)
    net.add_routes(x, task, y, route)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name])


def test_reset_parameters_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = make(seed=5), make(seed=5), make(seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(flat(a), flat(b))
    assert not torch.equal(flat(a), flat(c))


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad"])
def test_named_optimizers(name):
    net = make(module_optimizer=name, module_batch_size=2)
    before = flat(net)
    net.add_routes(
        torch.randn(2, 6),
        torch.tensor([0, 1]),
        torch.tensor([0, 1]),
        torch.zeros(2, 3, dtype=torch.long),
    )
    assert net.num_updates == 1 and not torch.equal(before, flat(net))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="routing"):
        make(routing="tree")
    with pytest.raises(ValueError, match="module_optimizer"):
        make(module_optimizer="lbfgs2")
    with pytest.raises(ValueError, match="num_modules"):
        make(num_modules=0)
    with pytest.raises(ValueError, match="trunk"):
        make(trunk="resnet")


def test_conv_trunk_on_images():
    net = RoutedNetwork((1, 28, 28), 10, 2, trunk="conv", num_modules=2, seed=0)
    assert net.trunk.output_dim == 32
    out = net(torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2]), torch.tensor([[0, 1, 0]] * 3))
    assert out.shape == (3, 2)


# ---------------------------------------------------------------------- grouped computation


def one_by_one(net: RoutedNetwork, x, task, routes) -> torch.Tensor:
    """The straightforward computation: each sample alone, module by module."""
    rows = []
    for i in range(len(x)):
        h = net.embed(x[i : i + 1])
        for depth in range(routes.shape[1]):
            if int(routes[i, depth]) >= 0:
                h = net.apply_one(h, depth, int(routes[i, depth]))
        rows.append(net.outputs(h, task[i : i + 1]))
    return torch.cat(rows)


def random_routes(generator, n, net, skew, stops):
    routes = torch.randint(0, net.num_modules, (n, net.max_depth), generator=generator)
    if skew:  # most rows on module 0: the chunked layout with gathered weights
        popular = torch.rand(n, net.max_depth, generator=generator) < 0.85
        routes = torch.where(popular, 0, routes)
    if stops:  # recurrent: stop (the extra action) then -1
        length = torch.randint(0, net.max_depth + 1, (n,), generator=generator)
        for i in range(n):
            k = int(length[i])
            if k < net.max_depth:
                routes[i, k] = net.extra_action
                routes[i, k + 1 :] = -1
    return routes


@pytest.mark.parametrize("skew", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        {"num_modules": 7},
        {"num_modules": 30},
        {"num_modules": 7, "routing": "recurrent", "readout": "per_task"},
        {"num_modules": 7, "routing": "recurrent"},
    ],
)
def test_grouped_forward_equals_one_by_one(options, skew):
    net = make(**options)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(41, 6, generator=g)
    task = torch.randint(0, 3, (41,), generator=g)
    routes = random_routes(g, 41, net, skew, stops=net.routing == "recurrent")
    if net.routing == "layered":  # PASS where sizes match (depth 1) on some rows
        routes[::5, 1] = net.extra_action
    expected = one_by_one(net, x, task, routes)
    with torch.no_grad():
        torch.testing.assert_close(net(x, task, routes), expected)
    torch.testing.assert_close(net(x, task, routes), expected)  # autograd on


@pytest.mark.parametrize("skew", [False, True])
@pytest.mark.parametrize("count", [1, 3, 12, 51])
def test_group_layout_puts_each_row_in_a_chunk_of_its_group(count, skew):
    rng = np.random.default_rng(count)
    for rows in (1, 7, 64, 300):
        if skew:  # a few large groups: chunks of the mean size, several per large group
            groups = np.minimum(rng.geometric(0.5, rows) - 1, count - 1)
        else:
            groups = rng.integers(0, count, rows)
        layout = GroupLayout(groups, count)
        size = layout.chunk_size
        np.testing.assert_array_equal(layout.sources[layout.slots], np.arange(rows))
        assert len(np.unique(layout.slots)) == rows
        np.testing.assert_array_equal(layout.chunk_groups[layout.slots // size], groups)
        np.testing.assert_array_equal(layout.used, np.unique(groups))
        assert (np.diff(layout.chunk_groups) >= 0).all()
        np.testing.assert_array_equal(layout.used[layout.chunk_local], layout.chunk_groups)
        assert layout.one_chunk_per_group == (len(layout.chunk_groups) == len(layout.used))
        # Padding at most doubles the rows (plus one partial chunk per group).
        assert len(layout.sources) <= 2 * rows + len(layout.used) * size
        last = int(layout.used[-1])
        first = int(np.flatnonzero(layout.chunk_groups == last)[0]) * size
        assert layout.first_slot_of(last) == first
        assert all(layout.first_slot_of(g) is None for g in range(count) if g != last)
        # Rows of a group keep their order within its chunks.
        for group in layout.used.tolist():
            assert (np.diff(layout.slots[groups == group]) > 0).all()
    with pytest.raises(IndexError, match="outside"):
        GroupLayout(np.array([0, count]), count)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_update_equals_the_straightforward_step(routing, optimizer):
    """`update` (by hand for layered SGD, autograd on the stacks elsewhere) takes the step of
    the plain-autograd `reference_update`, whose loss is the per-sample one; unrouted modules
    get no gradient."""
    options = {"routing": routing, "module_optimizer": optimizer, "num_modules": 6}
    if routing == "recurrent":
        options["readout"] = "per_task"
    net, reference = make(**options), make(**options)
    assert (net._by_hand_lr() is not None) == (routing == "layered" and optimizer == "sgd")
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        x, y = torch.randn(25, 6, generator=g), torch.randint(0, 2, (25,), generator=g)
        task = torch.randint(0, 3, (25,), generator=g)
        routes = random_routes(g, 25, net, skew=True, stops=routing == "recurrent")
        routes[:, 0] = routes[:, 0].clamp(0, 4)  # module 5 of the first layer stays unrouted
        with torch.no_grad():
            alone = reference.per_sample_loss(one_by_one(reference, x, task, routes), y).mean()
        loss = reference_update(reference, x, task, y, routes)
        assert loss == pytest.approx(float(alone), rel=1e-5)
        assert net.update(x, task, y, routes) == pytest.approx(loss, rel=1e-5)
        for (name, p), q in zip(net.named_parameters(), reference.parameters(), strict=True):
            if optimizer == "sgd":
                torch.testing.assert_close(p, q, msg=name)
            else:  # Adam divides by tiny gradients: compare what it was given, then align
                assert (p.grad is None) == (q.grad is None), name
                if p.grad is not None:
                    torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
                with torch.no_grad():
                    p.copy_(q)
    if routing == "layered":  # never routed: no gradient (and SGD steps never set module grads)
        assert net.layers[0][5][0].weight.grad is None
        assert reference.layers[0][5][0].weight.grad is None


def test_parameters_are_views_of_the_stacked_weights_and_stay_right():
    import copy

    net = make(num_modules=5)
    g = torch.Generator().manual_seed(5)
    x, task = torch.randn(9, 6, generator=g), torch.randint(0, 3, (9,), generator=g)
    y, routes = torch.randint(0, 2, (9,), generator=g), torch.randint(0, 5, (9, 3), generator=g)
    weight, _ = net._kernel.stacked(1)
    assert net.layers[1][3][0].weight.data_ptr() == weight[3].data_ptr()
    clone = copy.deepcopy(net)
    before = params(net)
    clone.update(x, task, y, routes)  # trains the copy only
    assert torch.equal(before, params(net)) and not torch.equal(before, params(clone))
    with torch.no_grad():
        torch.testing.assert_close(clone(x, task, routes), one_by_one(clone, x, task, routes))
        net.load_state_dict(clone.state_dict())
        torch.testing.assert_close(net(x, task, routes), clone(x, task, routes))
        # A replaced parameter is picked up (the stack is rebuilt from the parameters).
        net.layers[2][1].weight = torch.nn.Parameter(torch.ones_like(net.layers[2][1].weight))
        torch.testing.assert_close(net(x, task, routes), one_by_one(net, x, task, routes))
        wide = copy.deepcopy(net).double()
        torch.testing.assert_close(
            wide(x.double(), task, routes), one_by_one(wide, x.double(), task, routes)
        )
    # The single-sample NumPy path reads the same weights.
    h = net.embed_sample(x[0])
    out = net.step_sample(h, 0, int(routes[0, 0]))
    with torch.no_grad():
        expected = net.apply_one(net.embed(x[:1]), 0, int(routes[0, 0]))[0].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def params(network: torch.nn.Module) -> torch.Tensor:
    return flat(network)


@pytest.mark.parametrize("task_type", ["classification", "regression"])
@pytest.mark.parametrize("skew", [False, True])
def test_update_by_hand_with_route_weights_equals_autograd_sgd(task_type, skew):
    """The default plain-SGD update (backward written out) against `reference_update`, the
    same SGD step through autograd, with PASS rows at the square middle layer and per-route
    weights (exploration squashing), some of them 0."""
    outputs = 2 if task_type == "classification" else 1
    options = {"num_modules": 5, "seed": 3, "task_type": task_type}
    net = RoutedNetwork((6,), 3, outputs, **options)
    reference = RoutedNetwork((6,), 3, outputs, **options)
    assert net._by_hand_lr() is not None
    g = torch.Generator().manual_seed(9)
    for _ in range(3):
        x, task = torch.randn(20, 6, generator=g), torch.randint(0, 3, (20,), generator=g)
        y = (
            torch.randint(0, 2, (20,), generator=g)
            if outputs == 2
            else torch.randn(20, generator=g)
        )
        routes = random_routes(g, 20, net, skew=skew, stops=False)
        routes[::4, 1] = net.extra_action  # PASS at the middle layer
        weights = torch.rand(20, generator=g)
        weights[::3] = 0.0
        value = net.update(x, task, y, routes, weights)
        assert value == pytest.approx(
            reference_update(reference, x, task, y, routes, weights), rel=1e-5
        )
        for (name, p), q in zip(net.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_reference_update_leaves_modules_of_weight_zero_routes_alone(optimizer):
    """A module that only routes of weight 0 went through gets no gradient from either path,
    so not even Adam's state moves it; the per-task readout heads likewise."""
    options = {"routing": "recurrent", "readout": "per_task", "module_optimizer": optimizer}
    net, reference = make(**options), make(**options)
    x, y = torch.randn(4, 6, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 0, 1])
    task = torch.tensor([0, 0, 1, 2])
    routes = torch.tensor([[0, 4, -1], [0, 1, 4], [2, 4, -1], [3, 4, -1]])
    weights = torch.tensor([1.0, 0.5, 0.0, 1.0])  # module 2 and head 1 only on a weight-0 route
    before = flat(net)
    assert net.update(x, task, y, routes, weights) == pytest.approx(
        reference_update(reference, x, task, y, routes, weights), rel=1e-6
    )
    torch.testing.assert_close(flat(net), flat(reference))
    for network in (net, reference):
        assert network.layers[0][2][0].weight.grad is None
        assert network.readout[1].weight.grad is None
    assert not torch.equal(before, flat(net))


# ---------------------------------------------------------------------- the per-row kernel


@contextlib.contextmanager
def kernel_for_every_batch(name: str):
    """The per-row kernel at every batch size, compiled (``"compiled"``) or as PyTorch
    operations (``"rows"``, what a GPU runs), or the grouped kernel (``"grouped"``)."""
    saved = row_kernel.MAX_ROWS, compiled.supported
    row_kernel.MAX_ROWS = 0 if name == "grouped" else 10**9
    if name == "rows":
        compiled.supported = lambda stacks: False
    try:
        yield
    finally:
        row_kernel.MAX_ROWS, compiled.supported = saved


def square_net(**kwargs) -> RoutedNetwork:
    """Inputs of the hidden size: PASS is allowed at the first two depths, where it passes the
    raw inputs (of either sign) on at the first, or at both."""
    outputs = kwargs.pop("outputs", 2)
    options = {"num_modules": 4, "hidden_dim": 6, "seed": 1, **kwargs}
    return RoutedNetwork((6,), 3, outputs, **options)


def passing_routes(generator, n, net) -> torch.Tensor:
    routes = torch.randint(0, net.num_modules, (n, net.max_depth), generator=generator)
    passing = torch.rand(n, 2, generator=generator) < 0.35
    routes[:, :2][passing] = net.extra_action
    routes[0, :2] = net.extra_action  # a raw input through two identity slots
    return routes


def test_the_kernel_is_chosen_by_batch_size():
    largest = row_kernel.MAX_ROWS
    assert row_kernel.serves(1) and row_kernel.serves(16) and row_kernel.serves(largest)
    assert not row_kernel.serves(0) and not row_kernel.serves(largest + 1)


@pytest.mark.parametrize("task_type", ["classification", "regression"])
@pytest.mark.parametrize("batch", [1, 5, 16, 32, 48])
def test_per_row_and_grouped_updates_equal_the_autograd_step(task_type, batch):
    """The per-row update and the grouped one (both by hand) take the step of
    `reference_update`, with PASS at the first two depths (raw inputs of either sign through
    the identity slots), route weights (some 0), over several updates."""
    options = {"task_type": task_type}
    outputs = 2 if task_type == "classification" else 1
    per_row, torch_rows, grouped, reference = (
        square_net(outputs=outputs, **options) for _ in range(4)
    )
    g = torch.Generator().manual_seed(batch)
    for _ in range(3):
        x, task = torch.randn(batch, 6, generator=g), torch.randint(0, 3, (batch,), generator=g)
        if outputs == 2:
            y = torch.randint(0, 2, (batch,), generator=g)
        else:
            y = torch.randn(batch, generator=g)
        routes = passing_routes(g, batch, per_row)
        weights = torch.rand(batch, generator=g)
        weights[::4] = 0.0
        expected = reference_update(reference, x, task, y, routes, weights)
        for kernel, net in (("compiled", per_row), ("rows", torch_rows), ("grouped", grouped)):
            with kernel_for_every_batch(kernel):
                loss = net.update(x, task, y, routes, weights)
            assert loss == pytest.approx(expected, rel=1e-5), kernel
        for kernel, net in (("compiled", per_row), ("rows", torch_rows), ("grouped", grouped)):
            for (name, p), r in zip(net.named_parameters(), reference.parameters(), strict=True):
                torch.testing.assert_close(p, r, msg=f"{kernel}: {name}")
    # The identity slots stay the identity, and the parameters views of the stacks.
    for net in (per_row, torch_rows):
        for bank in (0, 1):
            stack = net._kernel.row_stack(bank)
            torch.testing.assert_close(stack.weight[-1], torch.eye(6), rtol=0, atol=0)
            assert not stack.bias[-1].any()
            assert net.layers[bank][2][0].weight.data_ptr() == stack.weight[2].data_ptr()


def test_small_updates_on_the_cpu_are_compiled_and_mark_the_stacks_changed(monkeypatch):
    net = square_net(module_batch_size=4)
    calls = []
    for name in ("sgd_rows", "sgd_batches"):  # update(), and an arrival's updates in one call
        original = getattr(compiled, name)
        monkeypatch.setattr(
            compiled, name, lambda *args, name=name, run=original: calls.append(name) or run(*args)
        )
    stacks = net._row_plan.stacks()
    versions = [(stack.weight._version, stack.bias._version) for stack in stacks]
    before = flat(net)
    g = torch.Generator().manual_seed(3)
    x, task = torch.randn(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    y = torch.randint(0, 2, (12,), generator=g)
    routes = torch.randint(0, 4, (12, 3), generator=g)
    net.update(x[:4], task[:4], y[:4], routes[:4])
    assert net.add_routes(x[4:], task[4:], y[4:], routes[4:]) == 2
    assert calls == ["sgd_rows", "sgd_batches"] and net.num_updates == 3
    assert not torch.equal(before, flat(net))
    for stack, (weight, bias) in zip(stacks, versions, strict=True):
        # A record or an autograd graph made before the updates sees that they happened.
        assert stack.weight._version > weight and stack.bias._version > bias


def test_small_routing_batches_on_the_cpu_are_compiled_and_equal_the_grouped_pass(monkeypatch):
    net = square_net()
    calls = []
    original = compiled.forward
    monkeypatch.setattr(compiled, "forward", lambda *args: calls.append(1) or original(*args))
    g = torch.Generator().manual_seed(5)
    h = torch.randn(12, 6, generator=g)
    actions = torch.randint(0, 4, (12,), generator=g)
    actions[:3] = net.extra_action  # PASS: the identity slot
    actions[3] = -1  # an ended route
    for depth in (0, 1, 2):
        taken = actions if depth < 2 else actions.clamp(0, 3)  # no identity at the logits
        with torch.no_grad():
            rowwise = net.apply(h, depth, taken)
            with kernel_for_every_batch("grouped"):
                grouped = net.apply(h, depth, taken)
        torch.testing.assert_close(rowwise, grouped)
        if depth < 2:
            assert torch.equal(rowwise[:4], h[:4])  # passed on unchanged, no ReLU
    assert len(calls) == 3
    with torch.enable_grad():  # autograd needs the grouped pass
        assert net.apply(h, 0, actions).requires_grad
    assert len(calls) == 3


def test_per_row_update_of_routes_without_pass_equals_the_grouped_one():
    """No row takes the identity slot: the plain ReLU path, against the grouped kernel."""
    per_row, grouped = square_net(), square_net()
    g = torch.Generator().manual_seed(7)
    for _ in range(4):
        x, task = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        y = torch.randint(0, 2, (16,), generator=g)
        routes = torch.randint(0, 4, (16, 3), generator=g)
        assert row_kernel.serves(16)
        per_row.update(x, task, y, routes)
        with kernel_for_every_batch("grouped"):
            grouped.update(x, task, y, routes)
    torch.testing.assert_close(flat(per_row), flat(grouped))


def test_row_plan_maps_routes_to_stack_rows_as_the_kernel_groups_them():
    net = make()  # depth 0: 6 -> 8 (no identity slot), 1: 8 -> 8, 2: 8 -> 2
    plan = net._row_plan
    routes = np.array([[0, 4, 1], [3, -1, 0], [2, 2, 3]])
    members, identity = plan.members(routes)
    np.testing.assert_array_equal(members, [[0, 3, 2], [4, 4, 2], [1, 0, 3]])
    assert members.flags.c_contiguous and identity == [False, True, False]
    for depth in range(3):
        np.testing.assert_array_equal(members[depth], net._kernel.groups(depth, routes[:, depth]))
    assert plan.members(np.array([[4, 0, 0]])) is None  # PASS where the sizes differ
    assert plan.members(np.array([[0, 0, 4]])) is None
    assert plan.members(np.array([[0, 5, 0]])) is None  # beyond PASS
    assert plan.members(np.array([[-1, 0, 0]])) is None  # an ended route where sizes differ
    members, identity = plan.members(np.array([[1, -3, 0]]))  # any negative is an ended route
    assert members[1, 0] == 4 and identity == [False, True, False]
    # Routes that the per-row kernel cannot take are updated as before (here by autograd).
    x, task, y = torch.randn(2, 6), torch.tensor([0, 1]), torch.tensor([1, 0])
    reference = make()
    passed = torch.tensor([[0, 1, 2], [1, 4, 3]])
    assert net.update(x, task, y, passed) == pytest.approx(
        reference_update(reference, x, task, y, passed), rel=1e-5
    )
    torch.testing.assert_close(flat(net), flat(reference))


def test_per_row_update_stops_on_a_diverged_loss_before_touching_the_parameters():
    net = square_net()
    before = flat(net)
    x = torch.full((4, 6), float("inf"))
    with pytest.raises(FloatingPointError, match="module loss"):
        task, routes = torch.zeros(4, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long)
        net.update(x, task, torch.tensor([0, 1, 0, 1]), routes)
    assert torch.equal(before, flat(net)) and net.num_updates == 0


def test_a_diverged_loss_inside_an_arrival_stops_there():
    """The updates before it are made and counted, it and the later ones are not."""
    g = torch.Generator().manual_seed(4)
    x, task = torch.randn(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    y, routes = torch.randint(0, 2, (12,), generator=g), torch.randint(0, 4, (12, 3), generator=g)
    x[5] = float("inf")  # in the second batch of 4
    net, first = square_net(module_batch_size=4), square_net(module_batch_size=4)
    first.update(x[:4], task[:4], y[:4], routes[:4])
    with pytest.raises(FloatingPointError, match="module loss is nan at update 2"):
        net.add_routes(x, task, y, routes)
    assert net.num_updates == 1 and torch.equal(flat(net), flat(first))


def test_compiled_update_refuses_bad_labels_and_shapes_before_touching_the_parameters():
    net = square_net()
    before = flat(net)
    x, task, routes = torch.randn(4, 6), torch.zeros(4, dtype=torch.long), torch.zeros(4, 3)
    routes = routes.long()
    with pytest.raises(ValueError, match="label"):
        net.update(x, task, torch.tensor([0, 1, 2, 0]), routes)  # 2 outputs: labels 0 and 1
    with pytest.raises(ValueError, match="label"):
        net.update(x, task, torch.tensor([0, -1, 1, 0]), routes)
    with pytest.raises(ValueError, match="inputs"):
        net.update(torch.randn(4, 5), task, torch.tensor([0, 1, 1, 0]), routes)
    regression = square_net(task_type="regression", outputs=1)
    with pytest.raises(ValueError, match="targets"):
        regression.update(x, task, torch.randn(4, 2), routes)
    assert torch.equal(before, flat(net)) and net.num_updates == 0
    assert regression.num_updates == 0


def test_module_lr_anneal_every_divides_the_lr_by_ten_per_period():
    from routing_env import RoutingEnv

    env = RoutingEnv("synthetic-mtl", module_batch_size=4, module_lr_anneal_every=8)
    network = env.network
    assert network.module_lr_anneal_every == 8
    seen = []
    network.register_update_hook(lambda net: seen.append(net.optimizer.param_groups[0]["lr"]))
    env.reset(seed=0)
    while network.num_updates < 5:
        _, _, terminated, _, _ = env.step(0)
        if terminated:
            env.reset()
    # The lr of the next update, after 4, 8, 12, 16, 20 routes trained.
    assert seen == pytest.approx([0.3, 0.03, 0.03, 0.003, 0.003])
    state = network.trainer_state()
    fresh = RoutingEnv("synthetic-mtl", module_batch_size=4, module_lr_anneal_every=8).network
    fresh.load_trainer_state(state)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(0.003)
    with pytest.raises(ValueError, match="module_lr_anneal_every must be a positive"):
        RoutingEnv("synthetic-mtl", module_lr_anneal_every=0)
