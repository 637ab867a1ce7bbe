"""STEM: the all-forward mixture, the task-specific backward, the embedding cost."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from conftest import SMALL_SCHEMA, random_batch, small_model

from mtreclib.models import create_model

THREE_TASKS = replace(SMALL_SCHEMA, task_names=("a", "b", "c"), task_implies=())


def _grads(model, loss) -> dict[str, torch.Tensor]:
    named = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    return {name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(named.items(), grads)}


def test_task_loss_reaches_only_the_shared_and_its_own_embeddings_and_experts():
    torch.manual_seed(0)
    model = small_model("stem", THREE_TASKS, task_expert_num=2)
    model.train()
    batch = random_batch(THREE_TASKS, size=64)
    labels = torch.cat([batch.labels, batch.labels[:, :1]], dim=1)  # random_batch gives two tasks
    logits = model(batch.categorical, batch.numerical)
    grads = _grads(model, F.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0]))

    def total(prefix: str) -> float:
        return sum(g.abs().sum().item() for name, g in grads.items() if name.startswith(prefix))

    # Task a (0): its table and the shared table (3), ids and numerical projection alike.
    for table in (0, 3):
        for part in ("embedding.weight", "numerical.weight", "numerical.bias"):
            assert grads[f"embeddings.{table}.{part}"].abs().sum() > 0, (table, part)
    for prefix in ("task_experts.0.", "shared_experts."):
        assert total(prefix) > 0, prefix
    # The other tasks' tables, experts and gates: exactly zero, not merely small.
    for prefix in ("embeddings.1.", "embeddings.2.", "task_experts.1.", "task_experts.2."):
        assert total(prefix) == 0.0, prefix
    gate_rows = grads["gates.linear.weight"].view(3, -1, grads["gates.linear.weight"].shape[1])  # (T, N, I)
    assert gate_rows[0].abs().sum() > 0 and gate_rows[1:].abs().sum() == 0
    # The towers are one bank: only member 0's slices move.
    for name, g in grads.items():
        if name.startswith("towers.weights") or name.startswith("towers.biases"):
            assert g[0].abs().sum() > 0 and g[1:].abs().sum() == 0, name


def test_other_tasks_experts_still_reach_the_gate_forward():
    """All forward: task a's gate learns from b's expert outputs, used as constants."""
    torch.manual_seed(1)
    model = small_model("stem", task_expert_num=1)  # experts: a's, b's, then 4 shared
    batch = random_batch(size=64)
    logits = model(batch.categorical, batch.numerical)
    grads = _grads(model, F.binary_cross_entropy_with_logits(logits[:, 0], batch.labels[:, 0]))
    gate_weight = grads["gates.linear.weight"].view(2, 6, -1)[0]  # task a's gate: (N, I), one row per expert
    assert gate_weight[1].abs().sum() > 0  # expert of task b
    assert grads["task_experts.1.weights.0"].abs().sum() == 0


def test_logits_are_the_gated_mixture_of_all_experts_computed_by_hand():
    torch.manual_seed(2)
    model = small_model("stem", task_expert_num=2)
    model.eval()
    batch = random_batch(size=16)
    with torch.no_grad():
        embedded = [table(batch.categorical, batch.numerical).flatten(1) for table in model.embeddings]  # a, b, shared
        experts = torch.cat(
            [model.task_experts[0](embedded[0]), model.task_experts[1](embedded[1]), model.shared_experts(embedded[2])], dim=1
        )  # (B, 2 + 2 + 4, H)
        task_fea = []
        for t in range(2):
            weight = model.gates.linear.weight.view(2, 8, -1)[t]  # gate t's rows
            bias = model.gates.linear.bias.view(2, 8)[t]
            g = torch.softmax((embedded[t] + embedded[2]) @ weight.T + bias, dim=-1)  # W_t (e^t + e^s) + b_t
            assert g.shape == (16, 8)
            task_fea.append(sum(g[:, j : j + 1] * experts[:, j] for j in range(8)))
        expected = model.towers(torch.stack(task_fea, dim=1)).squeeze(-1)
        torch.testing.assert_close(model(batch.categorical, batch.numerical), expected, rtol=1e-5, atol=1e-6)


def test_defaults_are_the_authors_and_the_embedding_cost_is_one_table_per_task_plus_one():
    stem = create_model("stem", SMALL_SCHEMA)
    assert stem.config.expert_num == 8 and stem.config.task_expert_num == 1  # num_shared_experts, num_specific_experts
    mmoe = create_model("mmoe", SMALL_SCHEMA)
    table = sum(p.numel() for p in mmoe.embedding.parameters())
    assert sum(p.numel() for p in stem.embeddings.parameters()) == (SMALL_SCHEMA.task_num + 1) * table
    assert stem.shared_experts.n + sum(bank.n for bank in stem.task_experts) == 8 + 2
