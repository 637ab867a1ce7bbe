"""MMoE: multi-gate mixture of experts."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@register_model("mmoe")
class MMoE(MultiTaskModel):
    """``expert_num`` shared expert MLPs; each task mixes them through its own softmax gate.

    Reference: Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018.
    https://doi.org/10.1145/3219819.3220007
    """

    Config = ExpertConfig
    paper = "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts, KDD 2018"

    def __init__(self, schema: FeatureSchema, config: ExpertConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.experts = MLPBank(self.embedding.output_dim, c.bottom_dims, c.expert_num, c.dropout)
        self.gates = Gate(self.embedding.output_dim, c.expert_num, gate_num=self.task_num)
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, self.task_num, c.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        task_fea = mix(self.gates(emb), self.experts(emb))  # (B, T, H)
        return self.towers(task_fea).squeeze(-1)  # (B, T)
