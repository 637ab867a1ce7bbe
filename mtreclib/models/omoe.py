"""OMoE: one-gate mixture of experts."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.layers import FieldEmbedding, Gate, MLPBank, mix
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.registry import register_model
from mtreclib.schema import FeatureSchema


@register_model("omoe")
class OMoE(MultiTaskModel):
    """One softmax gate mixes ``expert_num`` expert MLPs; every task's tower reads the same mixture.

    Reference: Jacobs, Jordan, Nowlan, Hinton, "Adaptive Mixtures of Local Experts",
    Neural Computation 3(1), 1991. https://doi.org/10.1162/neco.1991.3.1.79
    (the one-gate baseline of the MMoE paper).
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
        self.gate = Gate(self.embedding.output_dim, expert_num)
        self.towers = MLPBank(bottom_dims[-1], tower_dims, self.task_num, dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical)  # (B, (F + 1) * D), multiplied field by field
        mixture = mix(self.gate(emb), self.experts(emb)).squeeze(1)  # (B, H)
        return self.towers(mixture).squeeze(-1)  # (B, T)
