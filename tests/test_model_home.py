"""HoME: the two-level hierarchy by hand, the task groups, the hierarchy mask."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_SCHEMA, random_batch, randomise_batchnorm, small_model

from mtreclib.core.settings import ConfigError
from mtreclib.models import create_model
from mtreclib.models.home import task_groups

THREE_TASKS = replace(SMALL_SCHEMA, task_names=("a", "b", "c"), task_implies=())
# Groups {a}, {b, c}; 2 shared experts, 1 per group (sigmoid self-gate), 2 per task (softmax self-gate).
TINY = {"embed_dim": 2, "bottom_dims": (3, 2), "tower_dims": (), "expert_num": 2, "group_expert_num": 1,
        "task_expert_num": 2, "task_groups": (0, 1, 1), "feature_gate_rank": 2}


def _normalised_expert(bank, i: int, x: torch.Tensor) -> torch.Tensor:
    """Member ``i`` of a one-block bank in eval mode: Swish(BatchNorm(x W_i + b_i))."""
    width = bank.weights[0].shape[2]
    norm, rows = bank.norms[0], slice(i * width, (i + 1) * width)
    h = x @ bank.weights[0][i] + bank.biases[0][i]
    h = (h - norm.running_mean[rows]) / torch.sqrt(norm.running_var[rows] + norm.eps) * norm.weight[rows] + norm.bias[rows]
    return h * torch.sigmoid(h)


def _gate(gate, g: int, x: torch.Tensor) -> torch.Tensor:
    """Gate ``g``'s scores for input ``x``: (B, I) -> (B, E)."""
    weight = gate.linear.weight.view(gate.gate_num, gate.expert_num, -1)[g]
    return x @ weight.T + gate.linear.bias.view(gate.gate_num, gate.expert_num)[g]


def _weighted(weights: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    return sum(weights[:, k : k + 1] * out for k, out in enumerate(outputs))


def test_logits_computed_by_hand():
    torch.manual_seed(0)
    model = small_model("home", THREE_TASKS, **TINY)
    randomise_batchnorm(model)
    model.eval()
    batch = random_batch(THREE_TASKS, size=16)
    with torch.no_grad():
        v = model.embedding(batch.categorical, batch.numerical).flatten(1)  # (B, 10)
        # Meta level: experts 0, 1 shared, 2 group a, 3 group {b, c}; each reads its own gated input.
        meta = []
        for i in range(4):
            feature_gate = 2 * torch.sigmoid(v @ model.feature_down[i] @ model.feature_up[i])
            meta.append(_normalised_expert(model.meta_experts, i, v * feature_gate))
        groups = []
        for g in range(2):
            mixed = _weighted(torch.softmax(_gate(model.group_gates, g, v), -1), [meta[0], meta[1], meta[2 + g]])
            own = torch.sigmoid(_gate(model.group_self_gates, g, v)) * meta[2 + g]  # one expert: sigmoid
            groups.append(mixed + own)
        shared = _weighted(torch.softmax(_gate(model.shared_gate, 0, v), -1), meta)
        shared = shared + _weighted(torch.softmax(_gate(model.shared_self_gate, 0, v), -1), meta[:2])  # two: softmax
        # Task level: 0, 1 shared (read m_s), 2 group a (m_a), 3 group {b, c} (m_bc), then two per task.
        inputs = [shared, shared, groups[0], groups[1], groups[0], groups[0], groups[1], groups[1], groups[1], groups[1]]
        task_experts = [_normalised_expert(model.task_experts, i, x) for i, x in enumerate(inputs)]
        h = []
        for t, g in enumerate((0, 1, 1)):
            allowed = [0, 1, 2 + g, 4 + 2 * t, 5 + 2 * t]
            mixed = _weighted(torch.softmax(_gate(model.task_gates, t, groups[g]), -1), [task_experts[k] for k in allowed])
            own = _weighted(torch.softmax(_gate(model.task_self_gates, t, groups[g]), -1), task_experts[4 + 2 * t : 6 + 2 * t])
            h.append(mixed + own)
        expected = model.towers(torch.stack(h, dim=1)).squeeze(-1)
        torch.testing.assert_close(model(batch.categorical, batch.numerical), expected, rtol=1e-5, atol=1e-6)


def test_task_level_experts_serve_only_their_task_and_group():
    """The hierarchy mask: task a's loss leaves the other group's and the other tasks' task-level experts untouched."""
    torch.manual_seed(1)
    model = small_model("home", THREE_TASKS, **{**TINY, "embed_dim": 4, "bottom_dims": (8, 6)})
    batch = random_batch(THREE_TASKS, size=64)
    loss = F.binary_cross_entropy_with_logits(model(batch.categorical, batch.numerical)[:, 0], batch.labels[:, 0])
    (grad,) = torch.autograd.grad(loss, [model.task_experts.weights[0]])  # (10 experts, I, H)
    used = [0, 1, 2, 4, 5]  # shared, group a, task a's
    assert all(grad[i].abs().sum() > 0 for i in used)
    assert grad[[3, 6, 7, 8, 9]].abs().sum() == 0


@pytest.mark.parametrize(
    "implies, given, expected",
    [
        (("", "click"), (), (0, 1)),  # AliExpress: click, and conversion after a click
        ((), (), (0, 0, 0)),  # no relations: one group
        (("", "click", "click", ""), (), (0, 1, 1, 0)),  # like and comment after a click; watch-time with click
        ((), (3, 3, 7), (0, 0, 1)),  # given, renumbered
    ],
)
def test_task_groups(implies, given, expected):
    names = ("click", "like", "comment", "watch")[: len(expected)] if len(expected) != 2 else ("click", "conversion")
    schema = replace(SMALL_SCHEMA, task_names=names, task_implies=tuple(implies))
    assert task_groups(schema, given) == expected


def test_wrong_number_of_groups_and_one_level_are_refused():
    with pytest.raises(ValueError, match="task_groups"):
        create_model("home", SMALL_SCHEMA, task_groups=(0, 1, 1))
    with pytest.raises(ConfigError, match="bottom_dims"):
        create_model("home", SMALL_SCHEMA, bottom_dims=(64,))


def test_feature_gates_scale_each_experts_input_within_zero_and_two():
    torch.manual_seed(2)
    model = small_model("home", THREE_TASKS, **TINY)
    captured = []
    model.meta_experts.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    batch = random_batch(THREE_TASKS, size=32)
    model(batch.categorical, batch.numerical)
    v = model.embedding(batch.categorical, batch.numerical).flatten(1)
    ratio = captured[0] / v.unsqueeze(1)  # (B, experts, I): each expert's own scale of each input
    assert ((ratio > 0) & (ratio < 2)).all()
    assert not torch.allclose(ratio[:, 0], ratio[:, 1])  # privatised: experts see different inputs
