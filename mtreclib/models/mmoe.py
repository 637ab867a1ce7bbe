"""MMoE: multi-gate mixture of experts."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.layers import FieldEmbedding, Gate, MLPBank, mix
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.registry import register_model
from mtreclib.schema import FeatureSchema


@register_model("mmoe")
class MMoE(MultiTaskModel):
    """``expert_num`` shared expert MLPs; each task mixes them through its own softmax gate.

    Reference: Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018.
    https://doi.org/10.1145/3219819.3220007
    """

    def __init__(
        self,
        schema: FeatureSchema,
        *,
        embed_dim: int = 128,
        bottom_dims: Sequence[int] = (512, 256),
        tower_dims: Sequence[int] = (128, 64),
        dropout: float = 0.2,
        expert_num: int = 8,
    ):
        super().__init__(schema)
        self.embedding = FieldEmbedding(schema.field_dims, schema.numerical_num, embed_dim)
        self.experts = MLPBank(self.embedding.output_dim, bottom_dims, expert_num, dropout)
        self.gates = Gate(self.embedding.output_dim, expert_num, gate_num=self.task_num)
        self.towers = MLPBank(bottom_dims[-1], tower_dims, self.task_num, dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical)  # (B, (F + 1) * D), multiplied field by field
        task_fea = mix(self.gates(emb), self.experts(emb))  # (B, T, H)
        return self.towers(task_fea).squeeze(-1)  # (B, T)
