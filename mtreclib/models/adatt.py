"""AdaTT: adaptive task-to-task fusion (AdaTT-sp)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@register_model("adatt")
class AdaTT(MultiTaskModel):
    """Task-specific fusion units at every level: a gate over all tasks' experts plus a native-expert residual.

    One fusion level per entry of ``bottom_dims``; every expert of level ``k`` is one MLP block of
    width ``bottom_dims[k]``. Each task has ``m = max(1, expert_num // T)`` experts per level (the
    ``expert_num`` experts of a level split evenly among the tasks, and at least one each: a
    dataset with more tasks than ``expert_num``, KuaiRand's seven, gets one expert per task).
    Task ``t``'s fusion unit at level ``k``, with ``x_t^0`` the field embeddings for every task::

        E_t^k = [E_t1^k(x_t^{k-1}) .. E_tm^k(x_t^{k-1})]                  task t's experts (m, H)
        g_t^k = softmax(W_t^k x_t^{k-1} + b_t^k)                           over all T m experts
        x_t^k = g_t^k [E_1^k; ..; E_T^k] + v_t^k E_t^k                     (H,)
        y_t   = tower_t(x_t^L)

    The second term is the native-expert residual: a learned linear combination ``v_t^k`` (m
    weights, initialised uniformly in +-sqrt(1/m)) of the task's own experts, or the plain sum of
    its one expert when ``m = 1`` (no weights), as in the authors' code.

    This is the paper's AdaTT-sp, as in facebookresearch/AdaTT (``AdaTTSp``, with
    ``self_exp_res_connect``, which its authors call crucial). Left out, from the general AdaTT
    (AdaTT-v): shared experts, the shared fusion unit that mixes all experts into the shared
    input of the next level, and its residual. Differences from the authors' code: experts are
    Linear, BatchNorm, ReLU, dropout blocks (the library's; theirs Linear, ReLU), and towers are
    the library's ``tower_dims`` MLPs.

    Reference: Li, Zhang, Yuan, Gao, Zhang, Yang, Liu, Yang, "AdaTT: Adaptive Task-to-Task Fusion
    Network for Multitask Learning in Recommendations", KDD 2023.
    https://doi.org/10.1145/3580305.3599769
    """

    Config = ExpertConfig
    paper = "Li et al., AdaTT: Adaptive Task-to-Task Fusion Network for Multitask Learning in Recommendations, KDD 2023"

    def __init__(self, schema: FeatureSchema, config: ExpertConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        task_num = self.task_num
        self.task_expert_num = max(1, c.expert_num // task_num)
        expert_num = task_num * self.task_expert_num
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.experts = nn.ModuleList()  # [level] -> bank of T m experts, task by task
        self.gates = nn.ModuleList()  # [level] -> T gates over all T m experts
        input_dim = self.embedding.output_dim
        for dim in c.bottom_dims:
            self.experts.append(MLPBank(input_dim, [dim], expert_num, c.dropout))
            self.gates.append(Gate(input_dim, expert_num, gate_num=task_num))
            input_dim = dim
        if self.task_expert_num > 1:
            bound = math.sqrt(1.0 / self.task_expert_num)
            self.native_weights = nn.Parameter(torch.empty(len(c.bottom_dims), task_num, self.task_expert_num).uniform_(-bound, bound))
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, task_num, c.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        m = self.task_expert_num
        x = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), the same input for every unit
        for level, (bank, gate) in enumerate(zip(self.experts, self.gates)):
            # Level 0: one product over every expert; later, each task's experts read its own x_t.
            experts = bank(x if level == 0 else x.repeat_interleave(m, dim=1))  # (B, T m, H)
            fused = mix(gate(x), experts)  # (B, T, H)
            native = experts.unflatten(1, (self.task_num, m))  # (B, T, m, H)
            if m == 1:
                fused = fused + native.squeeze(2)
            else:
                fused = fused + torch.einsum("tm,btmh->bth", self.native_weights[level], native)
            x = fused
        return self.towers(x).squeeze(-1)  # (B, T)
