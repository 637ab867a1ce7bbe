"""IMTL: impartial multi-task learning, by gradients (IMTL-G) and by learned loss scales (IMTL-L)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtreclib.core.settings import search_choices, setting
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext
from mtreclib.mto.gradients import GradientConfig, GradientLayout, GradientStrategy
from mtreclib.mto.registry import register_strategy
from mtreclib.mto.solvers import imtl_weights


@dataclass(frozen=True)
class IMTLConfig(GradientConfig):
    """IMTL's settings: the hybrid of the paper's main results (both parts) by default."""

    imtl_loss_scale: bool = setting(
        True, "IMTL-L: learn a scale s_t per task loss, e^s_t L_t - s_t, besides IMTL-G (imtl)", search=search_choices(True, False)
    )


@register_strategy("imtl")
class IMTL(GradientStrategy):
    """IMTL: an update with equal projections on every task's gradient, and learned loss scales.

    IMTL-G: the shared update ``g = sum_t a_t g_t`` (``sum_t a_t = 1``) whose projections on
    every task's unit gradient ``u_t = g_t / |g_t|`` are equal, in closed form
    ``a_{2:T} = g_1 U^T (D U^T)^{-1}``, ``D_t = g_1 - g_t``, ``U_t = u_1 - u_t``.

    IMTL-L (``imtl_loss_scale``): each loss becomes ``e^{s_t} L_t - s_t`` before its gradient is
    taken, with ``s_t`` learned by the run's optimizer from that same loss (its gradient is
    ``e^{s_t} L_t - 1``, so the scaled losses are driven toward 1). Task-specific parameters take
    their own task's gradient of the scaled loss. The recorded weights are ``a_t e^{s_t}``, the
    effective weights on the raw task gradients.

    Reference: Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task
    Learning", ICLR 2021. https://openreview.net/forum?id=IMPnRXEWpvr
    """

    Config = IMTLConfig

    def __init__(self, task_num: int, config: IMTLConfig | None = None):
        super().__init__(task_num, config)
        if self.config.imtl_loss_scale:
            self.loss_scales = nn.Parameter(torch.zeros(task_num))

    def scale_losses(self, losses: TaskLosses, context: StepContext) -> TaskLosses:
        if not self.config.imtl_loss_scale:
            return losses
        scales = self.loss_scales.detach().exp().to(losses.tasks.dtype)
        grad = scales * losses.tasks.detach() - 1.0  # d/ds (e^s L - s); the trainer averages it over ranks
        self.loss_scales.grad = grad if self.loss_scales.grad is None else self.loss_scales.grad + grad
        return TaskLosses(scales * losses.tasks, losses.auxiliary)

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        return imtl_weights(gram)

    def update(self, matrix: torch.Tensor, layout: GradientLayout, losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        update = super().update(matrix, layout, losses, context)
        if self.config.imtl_loss_scale:
            self.last_weights.mul_(self.loss_scales.detach().exp())
        return update
