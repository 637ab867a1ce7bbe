"""PLE: progressive layered extraction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.core.settings import ConfigError
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@dataclass(frozen=True)
class PLEConfig(ExpertConfig):
    """PLE's settings: ``expert_num`` is split half shared, half per task at every level."""

    def check(self) -> None:
        if self.expert_num < 2:
            raise ConfigError(f"expert_num (--expert-num) must be at least 2 for PLE (half shared, half per task), got {self.expert_num}")


@register_model("ple")
class PLE(MultiTaskModel):
    """Customized gate control stacked into extraction levels.

    One level per entry of ``bottom_dims``; every expert of level ``i`` is one MLP block of width
    ``bottom_dims[i]``. Each level has ``expert_num // 2`` shared experts and ``expert_num // 2``
    experts per task. Task ``t``'s gate mixes its own and the shared experts into task ``t``'s
    input of the next level; a shared gate mixes all experts into the shared input of the next
    level. The last level has no shared gate: nothing reads its output, and a parameter that
    never gets a gradient would break DistributedDataParallel (the original creates one).

    Reference: Tang, Liu, Zhao, Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task
    Learning (MTL) Model for Personalized Recommendations", RecSys 2020.
    https://doi.org/10.1145/3383313.3412236
    """

    Config = PLEConfig
    paper = "Tang et al., Progressive Layered Extraction (PLE), RecSys 2020"

    def __init__(self, schema: FeatureSchema, config: PLEConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        bottom_dims, dropout = c.bottom_dims, c.dropout
        shared_num = specific_num = c.expert_num // 2
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.task_experts = nn.ModuleList()  # [level][task] -> bank of specific_num experts
        self.shared_experts = nn.ModuleList()  # [level] -> bank of shared_num experts
        self.task_gates = nn.ModuleList()  # [level][task] -> gate over own + shared experts
        self.shared_gates = nn.ModuleList()  # [level] -> gate over all experts; none at the last level
        input_dim = self.embedding.output_dim
        for level, dim in enumerate(bottom_dims):
            self.task_experts.append(
                nn.ModuleList(MLPBank(input_dim, [dim], specific_num, dropout) for _ in range(self.task_num))
            )
            self.shared_experts.append(MLPBank(input_dim, [dim], shared_num, dropout))
            self.task_gates.append(
                nn.ModuleList(Gate(input_dim, specific_num + shared_num) for _ in range(self.task_num))
            )
            if level < len(bottom_dims) - 1:
                self.shared_gates.append(Gate(input_dim, self.task_num * specific_num + shared_num))
            input_dim = dim
        self.towers = MLPBank(bottom_dims[-1], c.tower_dims, self.task_num, dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        task_fea = [emb] * self.task_num
        shared_fea = emb
        for level in range(len(self.task_experts)):
            shared_out = self.shared_experts[level](shared_fea)  # (B, S, H)
            task_outs = [bank(fea) for bank, fea in zip(self.task_experts[level], task_fea)]  # T x (B, K, H)
            if level < len(self.shared_gates):
                all_out = torch.cat([*task_outs, shared_out], dim=1)  # (B, T * K + S, H)
                shared_fea = mix(self.shared_gates[level](shared_fea), all_out).squeeze(1)  # (B, H)
            task_fea = [
                mix(gate(fea), torch.cat([out, shared_out], dim=1)).squeeze(1)  # (B, H)
                for gate, fea, out in zip(self.task_gates[level], task_fea, task_outs)
            ]
        return self.towers(torch.stack(task_fea, dim=1)).squeeze(-1)  # (B, T)
