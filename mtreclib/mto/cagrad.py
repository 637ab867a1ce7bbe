"""CAGrad: the direction that best improves the worst task within a ball around the mean gradient."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mtreclib.core.settings import search_choices, search_range, setting
from mtreclib.mto.base import StepContext
from mtreclib.mto.gradients import GradientConfig, GradientStrategy
from mtreclib.mto.registry import register_strategy
from mtreclib.mto.solvers import cagrad_weights

_RESCALE = {"none": lambda c: 1.0, "square": lambda c: 1.0 + c**2, "linear": lambda c: 1.0 + c}


@dataclass(frozen=True)
class CAGradConfig(GradientConfig):
    """CAGrad's settings: the paper's c = 0.4 (its NYU-v2 and Cityscapes runs) and the authors' rescaling."""

    cagrad_c: float = setting(
        0.4, "CAGrad's radius c: 0 is equal weighting, larger moves toward the worst task (cagrad)", minimum=0, search=search_range(0.1, 1.0)
    )
    cagrad_rescale: str = setting(
        "square", "divide CAGrad's direction by 1 + c^2 (square, the authors' default), 1 + c (linear) or nothing (cagrad)",
        choices=tuple(_RESCALE), search=search_choices(*_RESCALE),
    )


@register_strategy("cagrad")
class CAGrad(GradientStrategy):
    """CAGrad: the direction best for the worst task within a ball around the mean gradient.

    Conflict-averse gradient descent: ``max_d min_t g_t . d`` subject to ``|d - g_0| <= c |g_0|``,
    ``g_0`` the mean gradient. Its solution is ``d = g_0 + (c |g_0| / |g_w|) g_w`` with ``w``
    minimising ``g_w . g_0 + c |g_0| |g_w|`` over the simplex; the shared update is ``d / (1 + c^2)``
    (``cagrad_rescale``). Task-specific parameters take their own task's gradient.

    Reference: Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021. https://arxiv.org/abs/2110.14048
    """

    Config = CAGradConfig

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        c = self.config.cagrad_c
        return cagrad_weights(gram, c) / _RESCALE[self.config.cagrad_rescale](c)
