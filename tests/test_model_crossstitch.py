"""Cross-stitch: each layer's task activations recombined by a learned T x T unit."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch, small_model

from mtreclib.core.schema import FeatureSchema

SCHEMA3 = FeatureSchema((5, 3, 11, 2), 6, ("a", "b", "c"))


def test_units_start_as_the_papers_convex_combination():
    two = small_model("crossstitch")
    for stitch in two.stitches:
        assert stitch.tolist() == [pytest.approx([0.9, 0.1]), pytest.approx([0.1, 0.9])]
    three = small_model("crossstitch", SCHEMA3)
    assert three.stitches[0].tolist() == [pytest.approx(row) for row in ([0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9])]
    assert len(three.stitches) == len(three.layers) == 2  # one unit after each bottom layer


def test_each_layer_reads_the_stitched_sum_of_all_tasks_activations():
    torch.manual_seed(0)
    model = small_model("crossstitch", SCHEMA3).double().eval()
    with torch.no_grad():
        for stitch in model.stitches:
            stitch.copy_(torch.randn(3, 3, dtype=torch.float64))
    batch = random_batch(SCHEMA3, size=16)
    numerical = batch.numerical.double()
    x = model.embedding(batch.categorical, numerical).flatten(1)
    for layer, stitch in zip(model.layers, model.stitches):
        activations = layer(x)  # (B, T, H): each task's own layer
        x = torch.stack([sum(stitch[t, s] * activations[:, s] for s in range(3)) for t in range(3)], dim=1)
    expected = model.towers(x).squeeze(-1)
    torch.testing.assert_close(model(batch.categorical, numerical), expected, rtol=1e-12, atol=1e-12)


def test_identity_units_make_the_task_networks_independent_and_the_initial_ones_do_not():
    batch = random_batch(size=32)
    for init, independent in ((torch.eye(2), True), (None, False)):
        torch.manual_seed(1)
        model = small_model("crossstitch")
        if init is not None:
            with torch.no_grad():
                for stitch in model.stitches:
                    stitch.copy_(init)
        model(batch.categorical, batch.numerical)[:, 0].sum().backward()
        other_task = model.layers[0].weights[0].grad[1]  # task 1's first layer
        assert bool((other_task == 0).all()) is independent
        assert (model.layers[0].weights[0].grad[0] != 0).any()
