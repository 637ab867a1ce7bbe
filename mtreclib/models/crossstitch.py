"""Cross-stitch networks: one network per task, linearly recombined after every layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.core.settings import search_range, setting
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, MLPBank


@dataclass(frozen=True)
class CrossStitchConfig(ModelConfig):
    """Cross-stitch's settings: how its units start."""

    stitch_same: float = setting(
        0.9,
        "initial weight of a task's own activations in each cross-stitch unit; the rest is split evenly "
        "among the other tasks (crossstitch)",
        minimum=0,
        maximum=1,
        search=search_range(0.5, 1.0),
    )


def stitch_init(task_num: int, same: float) -> torch.Tensor:
    """The (T, T) initial unit: ``same`` on the diagonal, ``(1 - same) / (T - 1)`` elsewhere (rows sum to 1)."""
    if task_num == 1:
        return torch.ones(1, 1)
    other = (1.0 - same) / (task_num - 1)
    return torch.full((task_num, task_num), other) + (same - other) * torch.eye(task_num)


@register_model("crossstitch")
class CrossStitch(MultiTaskModel):
    """One MLP per task over the shared field embeddings; after each of its layers, a cross-stitch unit.

    Contract, for layer ``l`` with task ``t``'s activations ``x^l_t`` (after ReLU and dropout)
    and a learned (T, T) unit ``alpha^l``::

        x~^l_t = sum_s alpha^l_{ts} x^l_s            the next layer of task t reads x~^l_t

    one unit after every layer of ``bottom_dims``; then each task's tower. Initialised as the
    paper's best choice, ``alpha_S = 0.9`` (same task), ``alpha_D = 0.1`` (the other task),
    generalised to ``(1 - alpha_S) / (T - 1)`` for each of ``T - 1`` other tasks.

    Decisions: the field embeddings are shared (they are the input; per-task tables would
    multiply the largest parameter block by T, and a unit on identical inputs is a no-op); the
    towers are task-private (units after the bottom layers, where the paper puts them after every
    layer but the classifier); the paper's higher learning rate for the units (x10^2 to 10^3 under
    SGD) is not used: the trainer has one Adam learning rate, whose steps do not scale with the
    gradient as SGD's do. Each layer of all task networks is one ``MLPBank`` product.

    Reference: Misra, Shrivastava, Gupta, Hebert, "Cross-stitch Networks for Multi-task
    Learning", CVPR 2016. https://doi.org/10.1109/CVPR.2016.433
    """

    Config = CrossStitchConfig
    paper = "Misra et al., Cross-stitch Networks for Multi-task Learning, CVPR 2016"

    def __init__(self, schema: FeatureSchema, config: CrossStitchConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        widths = [self.embedding.output_dim, *c.bottom_dims]
        self.layers = nn.ModuleList(MLPBank(i, [o], self.task_num, c.dropout) for i, o in zip(widths[:-1], widths[1:]))
        self.stitches = nn.ParameterList(nn.Parameter(stitch_init(self.task_num, c.stitch_same)) for _ in c.bottom_dims)
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, self.task_num, c.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        x = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), read by every task's first layer
        for layer, stitch in zip(self.layers, self.stitches):
            x = layer(x)  # (B, T, H)
            x = stitch @ x  # (T, T) @ (B, T, H) -> (B, T, H)
        return self.towers(x).squeeze(-1)  # (B, T)
