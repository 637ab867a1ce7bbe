"""AITM: adaptive information transfer between sequential tasks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, Batch, FeatureSchema
from mtreclib.core.settings import search_range, setting
from mtreclib.models.base import MultiTaskModel, TaskLosses
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, MLPBank


@dataclass(frozen=True)
class AITMConfig(ModelConfig):
    """AITM's settings: the weight of the behavioural expectation calibrator."""

    calibrator_weight: float = setting(
        0.0, "weight alpha of the behavioural expectation calibrator; the paper's is 0.6, 0 turns it off (aitm)", minimum=0,
        search=search_range(0.0, 1.0),
    )


def calibrator_penalty(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_b sum_{t >= 2} max(p_t - p_{t-1}, 0)`` for (B, T) logits -> (): a later task predicted
    likelier than the one before it (a purchase likelier than its click) is penalised. With (B,)
    row ``weights``, the weighted mean over rows, as ``task_bce`` takes it."""
    probabilities = torch.sigmoid(logits.to(torch.promote_types(logits.dtype, torch.float32)))  # (B, T)
    per_row = torch.relu(probabilities[:, 1:] - probabilities[:, :-1]).sum(1)  # (B,)
    if weights is None:
        return per_row.mean()
    return (weights * per_row).sum() / weights.sum().clamp_min(1e-12)


@register_model("aitm")
class AITM(MultiTaskModel):
    """One bottom per task; each task after the first attends over what the previous task passes on.

    For task ``t >= 2``: ``p = g_t(z_{t-1})`` (the transferred information) and ``q = z_t`` are
    stacked, projected by shared ``V``, ``K``, ``Q`` linears, and ``z_t`` becomes the attention
    (scores ``<K, Q> / sqrt(H)``, softmax over the two) weighted sum of the ``V``s. ``z_{t-1}`` is
    the previous task's already updated representation, as in the paper and the original.

    Behavioural expectation calibrator (``calibrator_weight`` alpha): the paper's loss is
    ``L_ce + alpha L_lc`` with ``L_ce`` the sum of the tasks' BCE and
    ``L_lc = 1/N sum_x sum_{t >= 2} max(p_t(x) - p_{t-1}(x), 0)`` (averaged over samples, summed
    over consecutive pairs; the authors' code: ``weight * reduce_mean(max(purchase - click, 0))``,
    weight 0.6). The library averages the task losses instead of summing them, so the calibrator
    enters as the auxiliary term ``alpha L_lc / T``: with equal task weights the step's loss is
    the paper's divided by T. The default 0 leaves it out, as the original MTReclib does, and is
    bit-identical to it (the plain per-task BCE, no auxiliary term). Regression tasks are learnt
    (transfer and attention need no probabilities) only with the calibrator off.

    Reference: Xi, Chen, Yan, Zhang, Zhu, Zhuang, Chen, "Modeling the Sequential Dependence among
    Audience Multi-step Conversions with Multi-task Learning in Targeted Display Advertising",
    KDD 2021. https://doi.org/10.1145/3447548.3467071
    """

    Config = AITMConfig
    paper = "Xi et al., Modeling the Sequential Dependence among Audience Multi-step Conversions, KDD 2021"
    min_tasks = 2

    def __init__(self, schema: FeatureSchema, config: AITMConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        if c.calibrator_weight > 0 and schema.regression_tasks:
            task = schema.task_names[schema.regression_tasks[0]]
            raise ValueError(f"AITM's calibrator compares the tasks' probabilities; regression task {task!r} has none: set calibrator_weight 0")
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

    def task_losses(self, batches: Sequence[Batch]) -> TaskLosses:
        """Each task's BCE; with ``calibrator_weight > 0`` also the calibrator, ``alpha L_lc / T``, as
        the auxiliary term (averaged over ``batches``, like the task losses)."""
        alpha = self.config.calibrator_weight
        if alpha == 0:
            return super().task_losses(batches)
        tasks, penalties = [], []
        for batch in batches:
            logits = self.logits(batch)
            tasks.append(self.batch_task_loss(logits, batch))
            penalties.append(calibrator_penalty(logits, batch.weights))
        return TaskLosses(torch.stack(tasks).mean(0), alpha * torch.stack(penalties).mean() / self.task_num)
