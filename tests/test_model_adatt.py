"""AdaTT-sp: fusion units over all tasks' experts plus the native-expert residual."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_SCHEMA, random_batch, randomise_batchnorm, small_model

from mtreclib.models import create_model


def _expert(bank, i: int, x: torch.Tensor) -> torch.Tensor:
    """Member ``i`` of a one-block bank in eval mode: ReLU(BatchNorm(x W_i + b_i)) with running statistics."""
    dim = bank.weights[0].shape[2]
    norm, rows = bank.norms[0], slice(i * dim, (i + 1) * dim)
    h = x @ bank.weights[0][i] + bank.biases[0][i]
    h = (h - norm.running_mean[rows]) / torch.sqrt(norm.running_var[rows] + norm.eps) * norm.weight[rows] + norm.bias[rows]
    return torch.relu(h)


@pytest.mark.parametrize("expert_num", [4, 2], ids=["two_per_task_learned_residual", "one_per_task_unit_residual"])
def test_fusion_levels_computed_by_hand(expert_num):
    """x_t^k = softmax(W_t x_t^{k-1} + b_t) [E_1; E_2] + v_t E_t, two levels, two tasks."""
    torch.manual_seed(0)
    model = small_model("adatt", expert_num=expert_num)
    randomise_batchnorm(model)
    model.eval()
    m = expert_num // 2
    assert model.task_expert_num == m and hasattr(model, "native_weights") == (m > 1)
    batch = random_batch(size=16)
    with torch.no_grad():
        x = [model.embedding(batch.categorical, batch.numerical).flatten(1)] * 2  # both units read the embeddings
        for level, (bank, gate) in enumerate(zip(model.experts, model.gates)):
            experts = [[_expert(bank, t * m + j, x[t]) for j in range(m)] for t in range(2)]  # task t reads its own x_t
            everyone = [e for task in experts for e in task]
            weight = gate.linear.weight.view(2, 2 * m, -1)
            bias = gate.linear.bias.view(2, 2 * m)
            fused = []
            for t in range(2):
                g = torch.softmax(x[t] @ weight[t].T + bias[t], dim=-1)
                mixed = sum(g[:, j : j + 1] * everyone[j] for j in range(2 * m))
                if m == 1:
                    native = experts[t][0]  # the plain sum with its one expert
                else:
                    native = sum(model.native_weights[level, t, j] * experts[t][j] for j in range(m))
                fused.append(mixed + native)
            x = fused
        expected = model.towers(torch.stack(x, dim=1)).squeeze(-1)
        torch.testing.assert_close(model(batch.categorical, batch.numerical), expected, rtol=1e-5, atol=1e-6)


def test_a_task_learns_from_every_tasks_experts_at_every_level():
    """Task-to-task fusion: task a's loss trains task b's experts (PLE's task gates would not)."""
    torch.manual_seed(1)
    model = small_model("adatt")
    batch = random_batch(size=64)
    loss = F.binary_cross_entropy_with_logits(model(batch.categorical, batch.numerical)[:, 0], batch.labels[:, 0])
    banks = list(model.experts)
    grads = torch.autograd.grad(loss, [bank.weights[0] for bank in banks])
    m = model.task_expert_num
    for grad in grads:  # (T m, I, H): task b's members are m .. 2m - 1
        assert grad[m : 2 * m].abs().sum() > 0


def test_native_weights_start_within_the_authors_bound_and_expert_num_is_split_per_task():
    torch.manual_seed(2)
    model = create_model("adatt", SMALL_SCHEMA, expert_num=8)
    assert model.task_expert_num == 4 and all(bank.n == 8 for bank in model.experts)
    assert model.native_weights.shape == (2, 2, 4)  # (levels, tasks, experts per task)
    assert model.native_weights.abs().max() <= math.sqrt(1 / 4)
    few = create_model("adatt", SMALL_SCHEMA, expert_num=1)  # fewer experts than tasks: one per task
    assert few.task_expert_num == 1 and all(bank.n == 2 for bank in few.experts) and not hasattr(few, "native_weights")
