"""Shared-Bottom: one bottom network, one tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.layers import MLP, FieldEmbedding, MLPBank
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.registry import register_model
from mtreclib.schema import FeatureSchema


@register_model("sharedbottom")
class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: all tasks read one bottom MLP through their own towers.

    Reference: Caruana, "Multitask Learning", Machine Learning 28, 1997.
    https://doi.org/10.1023/A:1007379606734
    """

    def __init__(
        self,
        schema: FeatureSchema,
        *,
        embed_dim: int = 128,
        bottom_dims: Sequence[int] = (512, 256),
        tower_dims: Sequence[int] = (128, 64),
        dropout: float = 0.2,
    ):
        super().__init__(schema)
        self.embedding = FieldEmbedding(schema.field_dims, schema.numerical_num, embed_dim)
        self.bottom = MLP(self.embedding.output_dim, bottom_dims, dropout)
        self.towers = MLPBank(bottom_dims[-1], tower_dims, self.task_num, dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical)  # (B, (F + 1) * D), multiplied field by field
        shared = self.bottom(emb)  # (B, H)
        return self.towers(shared).squeeze(-1)  # (B, T)
