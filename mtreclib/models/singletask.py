"""SingleTask: one independent network per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtreclib.layers import MLP, FieldEmbedding
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.registry import register_model
from mtreclib.schema import FeatureSchema


class _SingleTaskNetwork(nn.Module):
    """Embedding, bottom MLP and tower of one task: (B, F), (B, M) -> (B, 1)."""

    def __init__(self, schema: FeatureSchema, embed_dim: int, bottom_dims: Sequence[int], tower_dims: Sequence[int], dropout: float):
        super().__init__()
        self.embedding = FieldEmbedding(schema.field_dims, schema.numerical_num, embed_dim)
        self.bottom = MLP(self.embedding.output_dim, bottom_dims, dropout)
        self.tower = MLP(bottom_dims[-1], tower_dims, dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        emb = self.embedding.flat(categorical, numerical)  # (B, (F + 1) * D), multiplied field by field
        return self.tower(self.bottom(emb))


@register_model("singletask")
class SingleTask(MultiTaskModel):
    """One model per task, trained jointly only in the sense of sharing the loop.

    Each task has its own embedding, bottom MLP and tower; nothing is shared. The baseline that
    multi-task models must beat (the "SingleTask" row of the original MTReclib).
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
        self.networks = nn.ModuleList(
            _SingleTaskNetwork(schema, embed_dim, bottom_dims, tower_dims, dropout) for _ in range(self.task_num)
        )

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats -> (B, T) logits."""
        return torch.cat([network(categorical, numerical) for network in self.networks], dim=1)
