"""Building blocks against their straightforward versions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtreclib.core.schema import Bag, BagField
from mtreclib.nn.layers import MLP, FieldEmbedding, Gate, MLPBank, mix


def separate_mlps(bank: MLPBank, input_dim: int, dims: tuple[int, ...], output_layer: bool) -> list[MLP]:
    """``bank.n`` ordinary MLPs holding the bank's weights, member by member."""
    members = []
    for i in range(bank.n):
        mlp = MLP(input_dim, dims, dropout=0.0, output_layer=output_layer)
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        norms = [m for m in mlp if isinstance(m, nn.BatchNorm1d)]
        with torch.no_grad():
            for linear, weight, bias in zip(linears, bank.weights, bank.biases):
                linear.weight.copy_(weight[i].T)
                linear.bias.copy_(bias[i])
            for norm, stacked, dim in zip(norms, bank.norms, dims):
                rows = slice(i * dim, (i + 1) * dim)
                norm.weight.copy_(stacked.weight[rows])
                norm.bias.copy_(stacked.bias[rows])
                norm.running_mean.copy_(stacked.running_mean[rows])
                norm.running_var.copy_(stacked.running_var[rows])
        members.append(mlp)
    return members


@pytest.mark.parametrize("shared_input", [True, False])
@pytest.mark.parametrize("output_layer", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_bank_equals_members_run_one_by_one(shared_input, output_layer, training):
    torch.manual_seed(0)
    n, input_dim, dims = 3, 10, (7, 5)
    bank = MLPBank(input_dim, dims, n, dropout=0.0, output_layer=output_layer)
    with torch.no_grad():  # non-trivial BatchNorm affine parameters and running statistics
        for norm in bank.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
            norm.running_mean.uniform_(-0.2, 0.2)
            norm.running_var.uniform_(0.5, 2.0)
    members = separate_mlps(bank, input_dim, dims, output_layer)
    bank.train(training)
    for m in members:
        m.train(training)
    x = torch.randn(16, input_dim) if shared_input else torch.randn(16, n, input_dim)
    x_members = x.clone().requires_grad_()
    x_bank = x.clone().requires_grad_()
    expected = torch.stack([m(x_members if shared_input else x_members[:, i]) for i, m in enumerate(members)], dim=1)
    got = bank(x_bank)
    assert got.shape == (16, n, 1 if output_layer else dims[-1])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Gradients: same input gradient, same per-member weight gradients.
    upstream = torch.randn_like(got)
    (got * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(x_bank.grad, x_members.grad, rtol=1e-4, atol=1e-5)
    for i, member in enumerate(members):
        linears = [m for m in member if isinstance(m, nn.Linear)]
        for linear, weight in zip(linears, bank.weights):
            torch.testing.assert_close(weight.grad[i].T, linear.weight.grad, rtol=1e-4, atol=1e-5)
    if training:  # running statistics updated per member and channel
        for i, member in enumerate(members):
            norms = [m for m in member if isinstance(m, nn.BatchNorm1d)]
            for norm, stacked, dim in zip(norms, bank.norms, dims):
                torch.testing.assert_close(stacked.running_mean[i * dim : (i + 1) * dim], norm.running_mean)


def test_bank_initialises_members_like_nn_linear():
    torch.manual_seed(0)
    bank = MLPBank(400, (300,), n=4, dropout=0.0)
    bound = 1 / 400**0.5
    weight = bank.weights[0]
    assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound
    assert abs(weight.std().item() - bound / 3**0.5) < 0.01 * bound * 10


def test_field_embedding_offsets_each_field_into_its_own_rows():
    layer = FieldEmbedding([3, 5, 2], numerical_num=4, embed_dim=6)
    categorical = torch.tensor([[2, 4, 1], [0, 0, 0]])
    numerical = torch.rand(2, 4)
    out = layer(categorical, numerical)
    assert out.shape == (2, 4, 6) and layer.output_dim == 24
    table = layer.embedding.weight
    torch.testing.assert_close(out[0, :3], table[[2, 3 + 4, 8 + 1]])
    torch.testing.assert_close(out[1, :3], table[[0, 3, 8]])
    torch.testing.assert_close(out[:, 3], layer.numerical(numerical))


def test_multi_valued_fields_are_pooled_as_documented_against_a_loop_over_rows():
    from mtreclib.core.schema import Bag, BagField

    bags = (BagField("tags", 7, "mean", weighted=True), BagField("items", 9, "sum"), BagField("cats", 5, "mean"))
    layer = FieldEmbedding([3], numerical_num=0, embed_dim=4, bags=bags)
    rows = [[[1, 6], [], [3, 3, 0]], [[2], [8, 8], []], [[4], [1, 2, 3], [0, 4]]]  # per field, per row
    weights = [[0.5, 2.0], [], [1.0, 1.0, 3.0]]
    batch = []
    for k, values in enumerate(rows):
        offsets = torch.tensor([0, *torch.tensor([len(v) for v in values]).cumsum(0).tolist()])
        flat = torch.tensor([x for v in values for x in v], dtype=torch.long)
        batch.append(Bag(flat, offsets, torch.tensor([w for v in weights for w in v]) if k == 0 else None))
    out = layer(torch.tensor([[0], [1], [2]]), torch.empty(3, 0), batch)  # (B, F + K, D): no numerical field
    assert out.shape == (3, 4, 4) and layer.field_num == 4
    table = layer.bag_embedding.weight
    starts = [0, 7, 16]
    for b in range(3):
        values, w = rows[0][b], weights[b]
        expected = sum(wi * table[starts[0] + v] for v, wi in zip(values, w)) / sum(w) if values else torch.zeros(4)
        torch.testing.assert_close(out[b, 1], expected)  # weighted mean: sum of w e over the sum of w
        values = rows[1][b]
        torch.testing.assert_close(out[b, 2], sum((table[starts[1] + v] for v in values), torch.zeros(4)))  # sum
        values = rows[2][b]
        expected = sum(table[starts[2] + v] for v in values) / len(values) if values else torch.zeros(4)
        torch.testing.assert_close(out[b, 3], expected)  # mean; an empty row pools to zeros


def test_gates_are_softmax_rows_and_mix_is_their_weighted_sum():
    gate = Gate(5, expert_num=4, gate_num=3)
    weights = gate(torch.randn(7, 5))
    assert weights.shape == (7, 3, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, 3))
    experts = torch.randn(7, 4, 6)
    expected = torch.einsum("bge,beh->bgh", weights, experts)
    torch.testing.assert_close(mix(weights, experts), expected)


def test_gates_with_one_input_row_each_equal_separate_linears():
    """A (B, G, I) input: gate g reads row g only, through its own rows of the weight."""
    torch.manual_seed(0)
    gate = Gate(5, expert_num=4, gate_num=3)
    x = torch.randn(7, 3, 5, requires_grad=True)
    got = gate(x)
    weight = gate.linear.weight.view(3, 4, 5)
    bias = gate.linear.bias.view(3, 4)
    expected = torch.stack([torch.softmax(x[:, g] @ weight[g].T + bias[g], dim=-1) for g in range(3)], dim=1)
    torch.testing.assert_close(got, expected)
    # Row g of the input moves gate g only.
    (grad,) = torch.autograd.grad(got[:, 1].pow(2).sum(), x)
    assert grad[:, 1].abs().sum() > 0 and grad[:, [0, 2]].abs().sum() == 0
    # A shared input gives what the same input repeated per gate gives.
    shared = torch.randn(7, 5)
    torch.testing.assert_close(gate(shared), gate(shared.unsqueeze(1).expand(7, 3, 5)))


@pytest.mark.parametrize("training", [True, False])
def test_swish_bank_equals_linear_batchnorm_swish_members(training):
    torch.manual_seed(0)
    n, input_dim, dims = 3, 6, (5, 4)
    bank = MLPBank(input_dim, dims, n, dropout=0.0, activation="swish").train(training)
    x = torch.randn(16, n, input_dim)
    expected = []
    for i in range(n):
        h = x[:, i]
        for layer, (weight, bias, dim) in enumerate(zip(bank.weights, bank.biases, dims)):
            norm = bank.norms[layer]
            rows = slice(i * dim, (i + 1) * dim)
            h = h @ weight[i] + bias[i]
            if training:
                mean, var = h.mean(0), h.var(0, unbiased=False)
            else:
                mean, var = norm.running_mean[rows], norm.running_var[rows]
            h = (h - mean) / torch.sqrt(var + norm.eps) * norm.weight[rows] + norm.bias[rows]
            h = h * torch.sigmoid(h)
        expected.append(h)
    torch.testing.assert_close(bank(x), torch.stack(expected, dim=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        MLPBank(input_dim, dims, n, dropout=0.0, activation="gelu")


@pytest.mark.parametrize("pooling", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bags_pool_each_rows_values_as_a_loop_over_rows_does(pooling, weighted):
    bags = (BagField("tags", 9, pooling, weighted=weighted), BagField("shops", 4, pooling, weighted=weighted))
    layer = FieldEmbedding([3], numerical_num=0, embed_dim=5, bags=bags)
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for field in bags:
        lengths = torch.tensor([2, 0, 3, 1, 0])  # rows without values pool to zeros
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        values = torch.randint(0, field.vocab_size, (int(offsets[-1]),), generator=generator)
        weights = torch.rand(len(values), generator=generator) + 0.1 if weighted else None
        inputs.append(Bag(values, offsets, weights))
    pooled = layer.pool_bags(inputs)
    assert pooled.shape == (5, 2, 5)
    start = 0
    for k, (field, bag) in enumerate(zip(bags, inputs)):
        table = layer.bag_embedding.weight[start : start + field.vocab_size]
        start += field.vocab_size
        for row in range(5):
            first, last = int(bag.offsets[row]), int(bag.offsets[row + 1])
            weights = bag.weights[first:last] if weighted else torch.ones(last - first)
            total = (weights.unsqueeze(1) * table[bag.values[first:last]]).sum(0)
            if pooling == "mean" and last > first:
                total = total / weights.sum()
            torch.testing.assert_close(pooled[row, k], total)


@pytest.mark.parametrize("columns", [512, 1], ids=["whole", "column_by_column"])
def test_gathered_rows_sum_and_their_gradient_is_each_rows_samples_summed(monkeypatch, columns):
    """``_SplitPlan.gather_sum``: sample b's output is the sum of its rows; row u's gradient is the
    sum of the output gradients of the samples that gathered it, counted once per gathering
    (summed over all columns at once, or a block of ``columns`` at a time)."""
    from mtreclib.nn.products import _GatherSum, _SplitPlan

    monkeypatch.setattr(_GatherSum, "COLUMNS", columns)

    plan = _SplitPlan(rows=torch.arange(4), bags=torch.tensor([[0, 2], [1, 2], [0, 3], [0, 0]]))  # (B=4, 2 fields)
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64, requires_grad=True)
    out = plan.gather_sum(rows)
    assert torch.equal(out.detach(), torch.tensor([[11.0, 0.0], [10.0, 1.0], [1.0, 10.0], [2.0, 0.0]], dtype=torch.float64))
    upstream = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], dtype=torch.float64)
    (grad,) = torch.autograd.grad(out, rows, upstream)
    # row 0: samples 0, 2 and twice 3; row 1: sample 1; row 2: samples 0 and 1; row 3: sample 2.
    expected = torch.tensor([[1 + 5 + 14.0, 2 + 6 + 16.0], [3.0, 4.0], [4.0, 6.0], [5.0, 6.0]], dtype=torch.float64)
    assert torch.equal(grad, expected)
