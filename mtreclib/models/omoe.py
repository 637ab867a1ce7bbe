"""OMoE: one-gate mixture of experts."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@register_model("omoe")
class OMoE(MultiTaskModel):
    """One softmax gate mixes ``expert_num`` expert MLPs; every task's tower reads the same mixture.

    Reference: Jacobs, Jordan, Nowlan, Hinton, "Adaptive Mixtures of Local Experts",
    Neural Computation 3(1), 1991. https://doi.org/10.1162/neco.1991.3.1.79
    (the one-gate baseline of the MMoE paper).
    """

    Config = ExpertConfig
    paper = "Jacobs et al., Adaptive Mixtures of Local Experts, Neural Computation 1991"

    def __init__(self, schema: FeatureSchema, config: ExpertConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.experts = MLPBank(self.embedding.output_dim, c.bottom_dims, c.expert_num, c.dropout)
        self.gate = Gate(self.embedding.output_dim, c.expert_num)
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, self.task_num, c.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        mixture = mix(self.gate(emb), self.experts(emb)).squeeze(1)  # (B, H)
        return self.towers(mixture).squeeze(-1)  # (B, T)
