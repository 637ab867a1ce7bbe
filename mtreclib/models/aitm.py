"""AITM: adaptive information transfer between sequential tasks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mtreclib.layers import FieldEmbedding, MLPBank
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.schema import Bag, FeatureSchema


@register_model("aitm")
class AITM(MultiTaskModel):
    """One bottom per task; each task after the first attends over what the previous task passes on.

    For task ``t >= 2``: ``p = g_t(z_{t-1})`` (the transferred information) and ``q = z_t`` are
    stacked, projected by shared ``V``, ``K``, ``Q`` linears, and ``z_t`` becomes the attention
    (scores ``<K, Q> / sqrt(H)``, softmax over the two) weighted sum of the ``V``s. ``z_{t-1}`` is
    the previous task's already updated representation, as in the paper and the original.

    Difference from the paper, as in the original MTReclib: no behavioural expectation
    calibrator term in the loss.

    Reference: Xi, Chen, Yan, Zhang, Zhu, Zhuang, Chen, "Modeling the Sequential Dependence among
    Audience Multi-step Conversions with Multi-task Learning in Targeted Display Advertising",
    KDD 2021. https://doi.org/10.1145/3447548.3467071
    """

    Config = ModelConfig
    paper = "Xi et al., Modeling the Sequential Dependence among Audience Multi-step Conversions, KDD 2021"
    min_tasks = 2

    def __init__(self, schema: FeatureSchema, config: ModelConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        bottom_dims, dropout = c.bottom_dims, c.dropout
        hidden = bottom_dims[-1]
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.bottoms = MLPBank(self.embedding.output_dim, bottom_dims, self.task_num, dropout)
        self.transfer = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(self.task_num - 1))
        self.value = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.query = nn.Linear(hidden, hidden)
        self.scale = 1.0 / math.sqrt(hidden)
        self.towers = MLPBank(hidden, c.tower_dims, self.task_num, dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        fea = list(self.bottoms(emb).unbind(1))  # T x (B, H)
        for t in range(1, self.task_num):
            x = torch.stack([self.transfer[t - 1](fea[t - 1]), fea[t]], dim=1)  # (B, 2, H)
            scores = (self.key(x) * self.query(x)).sum(-1, keepdim=True) * self.scale  # (B, 2, 1)
            fea[t] = (torch.softmax(scores, dim=1) * self.value(x)).sum(1)  # (B, H)
        return self.towers(torch.stack(fea, dim=1)).squeeze(-1)  # (B, T)
