"""CGC: each task's gate mixes its own and the shared experts, never another task's."""

from __future__ import annotations

import torch
from conftest import random_batch, small_model

from mtreclib.core.schema import FeatureSchema
from mtreclib.models import create_model

SCHEMA3 = FeatureSchema((5, 3, 11, 2), 6, ("a", "b", "c"))


def test_output_is_each_tasks_gate_over_own_and_shared_experts_computed_one_by_one():
    torch.manual_seed(0)
    model = small_model("cgc", SCHEMA3, expert_num=4).double().eval()  # 2 shared, 2 per task
    batch = random_batch(SCHEMA3, size=16)
    numerical = batch.numerical.double()
    emb = model.embedding(batch.categorical, numerical).flatten(1)  # (B, E * D)
    experts = model.experts(emb)  # (B, 2 + 3 * 2, H): shared, then task 0's, 1's, 2's
    gates = model.gates(emb)  # (B, 3, 2 + 2): own, then shared
    mixed = []
    for t in range(3):
        own = experts[:, 2 + 2 * t : 4 + 2 * t]
        shared = experts[:, :2]
        fea = sum(gates[:, t, k : k + 1] * own[:, k] for k in range(2))
        fea = fea + sum(gates[:, t, 2 + j : 3 + j] * shared[:, j] for j in range(2))
        mixed.append(fea)
    expected = model.towers(torch.stack(mixed, dim=1)).squeeze(-1)
    torch.testing.assert_close(model(batch.categorical, numerical), expected, rtol=1e-12, atol=1e-12)


def test_a_tasks_logit_does_not_depend_on_another_tasks_experts():
    torch.manual_seed(1)
    model = small_model("cgc", SCHEMA3, expert_num=4)
    batch = random_batch(SCHEMA3, size=32)
    model(batch.categorical, batch.numerical)[:, 0].sum().backward()
    first_layer = model.experts.weights[0].grad  # (2 + 3 * 2, I, H)
    assert (first_layer[:2].abs().sum((1, 2)) > 0).all()  # shared experts
    assert (first_layer[2:4].abs().sum((1, 2)) > 0).all()  # task 0's own
    assert (first_layer[4:] == 0).all()  # tasks 1 and 2's experts


def test_sizes_follow_ples_expert_split():
    model = create_model("cgc", FeatureSchema((5, 3), 0), expert_num=8, bottom_dims=(32, 16))
    assert model.experts.n == 4 + 2 * 4  # 4 shared + 4 per task
    assert model.gates.gate_num == 2 and model.gates.expert_num == 4 + 4
    assert model.experts.weights[-1].shape[-1] == 16  # an expert is a whole bottom MLP
