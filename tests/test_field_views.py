"""Views of the field embeddings (``mtreclib.nn.field_views``): products split by field equal the
straightforward product of the selected, scaled columns, and so do their gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch

from mtreclib.core.schema import BagField, FeatureSchema
from mtreclib.nn.field_views import FieldConcat, FieldView
from mtreclib.nn.layers import FieldEmbedding

SCHEMA = FeatureSchema(field_dims=(3, 50, 4), numerical_num=2, bags=(BagField("tags", 6),))


def _layer(split: bool) -> FieldEmbedding:
    torch.manual_seed(0)
    layer = FieldEmbedding.from_schema(SCHEMA, 3).double()
    layer.split_products = split
    layer.min_split_macs = 0
    layer.projection_ratio = 0.2  # at batch 20: fields 0 and 2 projected, field 1 (50 ids) dense
    return layer


def test_a_scaled_view_of_two_fields_is_their_columns_times_the_scales_by_hand():
    layer = _layer(split=False)
    batch = random_batch(SCHEMA, size=4, seed=1)
    flat = layer.flat(batch.categorical, batch.numerical.double(), batch.bags)
    scale = torch.arange(4 * 5, dtype=torch.float64).view(4, 5) / 10  # (B, E): 3 fields, 1 bag, numerical
    fields = layer(batch.categorical, batch.numerical.double(), batch.bags)  # (B, E, D)
    view = FieldView(flat, [2, 4], scale=scale)
    expected = torch.cat([fields[:, 2] * scale[:, 2:3], fields[:, 4] * scale[:, 4:5]], dim=1)  # (B, 2 * D)
    torch.testing.assert_close(view.tensor(), expected, rtol=1e-15, atol=0)
    assert view.width == 6


@pytest.mark.parametrize("detached", [False, True])
def test_split_products_of_views_equal_the_straightforward_ones_with_their_gradients(detached):
    batch = random_batch(SCHEMA, size=20, seed=2)
    results = []
    for split in (True, False):
        layer = _layer(split)
        flat = layer.flat(batch.categorical, batch.numerical.double(), batch.bags)
        scale = torch.rand(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
        weight = torch.randn(5 * 3 + 2 * 3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
        bias = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
        x = FieldConcat([FieldView(flat, scale=scale, detached=detached), FieldView(flat, [0, 3], detached=detached)])
        out = x.linear(weight, bias)  # (B, 7)
        upstream = torch.randn(20, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
        (out * upstream).sum().backward()
        grads = [scale.grad, weight.grad] + [p.grad for p in layer.parameters()]
        results.append((out.detach(), grads))
    assert layer.split_products is False and set(_layer(True).flat(batch.categorical, batch.numerical, batch.bags)._plan_split().projected) == {0, 2}
    (fast, fast_grads), (plain, plain_grads) = results
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    for got, want in zip(fast_grads, plain_grads):
        if detached and want is None:
            assert got is None  # no gradient reaches the embeddings through a detached view
            continue
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if detached:
        assert all(g is None for g in plain_grads[2:])
