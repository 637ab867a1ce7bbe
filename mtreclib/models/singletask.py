"""SingleTask: one independent network per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import MLP, FieldEmbedding


class _SingleTaskNetwork(nn.Module):
    """Embedding, bottom MLP and tower of one task: (B, F), (B, M), K bags -> (B, 1)."""

    def __init__(self, schema: FeatureSchema, config: ModelConfig):
        super().__init__()
        self.embedding = FieldEmbedding.from_schema(schema, config.embed_dim)
        self.bottom = MLP(self.embedding.output_dim, config.bottom_dims, config.dropout)
        self.tower = MLP(config.bottom_dims[-1], config.tower_dims, config.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        return self.tower(self.bottom(emb))


@register_model("singletask")
class SingleTask(MultiTaskModel):
    """One model per task, trained jointly only in the sense of sharing the loop.

    Each task has its own embedding, bottom MLP and tower; nothing is shared. The baseline that
    multi-task models must beat (the "SingleTask" row of the original MTReclib).
    """

    Config = ModelConfig
    paper = "baseline: one network per task"

    def __init__(self, schema: FeatureSchema, config: ModelConfig | None = None):
        super().__init__(schema, config)
        self.networks = nn.ModuleList(_SingleTaskNetwork(schema, self.config) for _ in range(self.task_num))

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        return torch.cat([network(categorical, numerical, bags) for network in self.networks], dim=1)
