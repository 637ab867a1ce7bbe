"""Shared-Bottom: one bottom network, one tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import MLP, FieldEmbedding, MLPBank


@register_model("sharedbottom")
class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: all tasks read one bottom MLP through their own towers.

    Reference: Caruana, "Multitask Learning", Machine Learning 28, 1997.
    https://doi.org/10.1023/A:1007379606734
    """

    Config = ModelConfig
    paper = "Caruana, Multitask Learning, Machine Learning 1997"

    def __init__(self, schema: FeatureSchema, config: ModelConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.bottom = MLP(self.embedding.output_dim, c.bottom_dims, c.dropout)
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, self.task_num, c.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        shared = self.bottom(emb)  # (B, H)
        return self.towers(shared).squeeze(-1)  # (B, T)
