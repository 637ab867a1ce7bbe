"""STEM: shared and task-specific embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.core.settings import search_range, setting
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@dataclass(frozen=True)
class STEMConfig(ExpertConfig):
    """STEM's settings: ``expert_num`` shared experts (the authors' 8) and ``task_expert_num`` per task (their 1)."""

    task_expert_num: int = setting(1, "task-specific experts of each task (stem, home)", minimum=1, search=search_range(1, 3))


@register_model("stem")
class STEM(MultiTaskModel):
    """Shared and task-specific embedding tables, mixed by All-Forward-Task-specific-Backward gates.

    Every field has ``T + 1`` embeddings: ``e^s`` (shared) and ``e^t`` (task ``t``'s), each from
    its own table. ``S = expert_num`` shared experts read ``e^s``; task ``t``'s ``m = task_expert_num``
    experts read ``e^t``. Task ``t``'s gate and representation are, over all ``N = T m + S`` experts::

        g_t = softmax(W_t (e^t + e^s) + b_t)                                   (B, N)
        h_t = sum_{j own or shared} g_tj f_j + sum_{j of other tasks} g_tj sg(f_j)
        y_t = tower_t(h_t)                                                     (logit)

    ``sg`` is the stop-gradient: every task sees every expert in the forward pass, but task
    ``t``'s loss trains only the shared and task ``t``'s experts and embeddings (and its own gate
    and tower); another task's experts and embeddings get exactly zero gradient from it.

    Decisions (the authors' code, github.com/LiangcaiSu/STEM, is the reference for what the paper
    leaves open): the gate reads the sum ``e^t + e^s`` of the flattened embeddings, as there; one
    STEM layer (their default ``num_layers=1``), so their shared gate, whose output only a
    second layer would read, is left out (a parameter without gradient would break DDP); each
    expert is an MLP of ``bottom_dims`` (theirs: 512, 512, 512). Differences: the gates are one
    linear layer then softmax, as in this library's MMoE and PLE, where the authors use an MLP
    gate (128, 64) in every model they compare; the experts and towers are this library's MLP
    blocks, Linear, BatchNorm, ReLU, dropout, as in every model here, where the authors'
    configuration has no BatchNorm (``batch_norm: False``); embed 128 and dropout 0.2 are the
    library's defaults (theirs: 16, no dropout).

    Cost: ``T + 1`` embedding tables (3x MMoE's embedding parameters at two tasks) and ``T m``
    more experts than the ``S`` shared ones (10 instead of MMoE's 8 at the defaults).

    Reference: Su, Pan, Wang, Xiao, Quan, Chen, Jiang, "STEM: Unleashing the Power of Embeddings
    for Multi-task Recommendation", AAAI 2024. https://arxiv.org/abs/2308.13537
    """

    Config = STEMConfig
    paper = "Su et al., STEM: Unleashing the Power of Embeddings for Multi-task Recommendation, AAAI 2024"

    def __init__(self, schema: FeatureSchema, config: STEMConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        task_num, specific_num = self.task_num, c.task_expert_num
        # Tables 0 .. T-1 are the tasks', table T the shared one.
        self.embeddings = nn.ModuleList(FieldEmbedding.from_schema(schema, c.embed_dim) for _ in range(task_num + 1))
        input_dim = self.embeddings[0].output_dim
        self.task_experts = nn.ModuleList(MLPBank(input_dim, c.bottom_dims, specific_num, c.dropout) for _ in range(task_num))
        self.shared_experts = MLPBank(input_dim, c.bottom_dims, c.expert_num, c.dropout)
        expert_num = task_num * specific_num + c.expert_num
        self.gates = Gate(input_dim, expert_num, gate_num=task_num)  # gate t reads task t's row
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, task_num, c.dropout, output_layer=True)
        # 1 where task t's gradient may flow: its own experts and the shared ones (the last S).
        trained = torch.zeros(task_num, expert_num)
        for t in range(task_num):
            trained[t, t * specific_num : (t + 1) * specific_num] = 1.0
        trained[:, task_num * specific_num :] = 1.0
        self.register_buffer("trained", trained, persistent=False)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        flats = [table.flat(categorical, numerical, bags) for table in self.embeddings]  # (T + 1) x (B, E * D)
        shared = flats[-1]
        specific = [bank(flat) for bank, flat in zip(self.task_experts, flats)]  # T x (B, m, H)
        experts = torch.cat([*specific, self.shared_experts(shared)], dim=1)  # (B, N, H)
        # The gates' products are small: densely, one batched product, rather than field by field.
        summed = torch.stack([flat.tensor() for flat in flats[:-1]], dim=1) + shared.tensor().unsqueeze(1)  # (B, T, E * D)
        gates = self.gates(summed)  # (B, T, N): softmax(W_t (e^t + e^s) + b_t)
        trained = gates * self.trained
        # All forward: every expert's output reaches every task; task-specific backward: other
        # tasks' experts enter as constants (their gate weights still learn from them).
        task_fea = mix(trained, experts) + mix(gates - trained, experts.detach())  # (B, T, H)
        return self.towers(task_fea).squeeze(-1)  # (B, T)
