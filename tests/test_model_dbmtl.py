"""DBMTL: each task's relation layer reads its tower and the relation outputs of the tasks it depends on."""

from __future__ import annotations

import torch
from conftest import SMALL_SCHEMA, random_batch, small_model

from mtreclib.core.schema import FeatureSchema
from mtreclib.models.dbmtl import task_dependencies


def test_dependencies_follow_the_implies_relation_else_the_previous_task():
    assert task_dependencies(SMALL_SCHEMA) == ((), (0,))
    fork = FeatureSchema((5,), 0, ("click", "cart", "buy", "like"), task_implies=("", "click", "click", ""))
    assert task_dependencies(fork) == ((), (0,), (0,), ())
    chain = FeatureSchema((5,), 0, ("a", "b", "c"))
    assert task_dependencies(chain) == ((), (0,), (1,))


def test_forward_is_the_bayesian_network_computed_by_hand():
    schema = FeatureSchema((5, 3, 11, 2), 6, ("a", "b", "c"))  # no relation: c <- b <- a
    torch.manual_seed(0)
    model = small_model("dbmtl", schema, relation_dims=(6,)).double().eval()
    batch = random_batch(schema, size=16)
    numerical = batch.numerical.double()
    shared = model.bottom(model.embedding(batch.categorical, numerical).flatten(1))
    towers = model.towers(shared)  # (B, 3, 4)
    r0 = model.relations[0](towers[:, 0])
    r1 = model.relations[1](torch.cat([towers[:, 1], r0], dim=1))
    r2 = model.relations[2](torch.cat([towers[:, 2], r1], dim=1))
    weight, bias = model.outputs.weights[0], model.outputs.biases[0]  # (3, 6, 1), (3, 1): one Linear per task
    expected = torch.stack([r @ weight[t, :, 0] + bias[t, 0] for t, r in enumerate((r0, r1, r2))], dim=1)
    torch.testing.assert_close(model(batch.categorical, numerical), expected, rtol=1e-12, atol=1e-12)
    assert model.relations[1][0].in_features == 4 + 6


def test_information_flows_from_parent_to_child_only():
    torch.manual_seed(1)
    model = small_model("dbmtl")  # click -> conversion
    batch = random_batch(size=32)
    model(batch.categorical, batch.numerical)[:, 1].sum().backward()  # the conversion logit
    assert model.relations[0][0].weight.grad.abs().sum() > 0  # reads the click's relation layer
    model.zero_grad()
    model(batch.categorical, batch.numerical)[:, 0].sum().backward()  # the click logit
    assert (model.relations[1][0].weight.grad == 0).all()
