"""Uncertainty weighting: each task's loss weighted by a learned homoscedastic uncertainty."""

from __future__ import annotations

import torch
from torch import nn

from mtreclib.core.settings import Settings
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext, Strategy
from mtreclib.mto.registry import register_strategy


@register_strategy("uw")
class UncertaintyWeights(Strategy):
    """Uncertainty weighting: each loss weighted by a learned inverse variance, 1 / (2 sigma_t^2).

    ``L = sum_t (e^{-s_t} L_t + s_t) / 2`` with ``s_t = log sigma_t^2`` learned by the run's
    optimizer together with the model (``s = 0`` at the start: weights 1/2). For fixed losses the
    minimum is at ``e^{s_t} = L_t``: each task ends up weighted by ``1 / (2 L_t)``, the inverse of
    its loss scale.

    The form is the paper's regression one, which common implementations use for every task; its
    classification form ``e^{-s} L + s / 2`` has the same weights at its minimum.

    Reference: Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018. https://arxiv.org/abs/1705.07115
    """

    def __init__(self, task_num: int, config: Settings | None = None):
        super().__init__(task_num, config)
        self.log_variances = nn.Parameter(torch.zeros(task_num))

    def combine(self, losses: TaskLosses, context: StepContext) -> torch.Tensor:
        weights = 0.5 * torch.exp(-self.log_variances)
        return self.weighted(losses, weights) + 0.5 * self.log_variances.sum()
