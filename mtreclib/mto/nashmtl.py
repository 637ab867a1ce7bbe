"""Nash-MTL: the update as the Nash bargaining solution between the tasks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mtreclib.core.settings import setting
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext
from mtreclib.mto.gradients import GradientConfig, GradientLayout, GradientStrategy
from mtreclib.mto.registry import register_strategy
from mtreclib.mto.solvers import nash_weights


@dataclass(frozen=True)
class NashMTLConfig(GradientConfig):
    """Nash-MTL's settings: weights solved every step by default, as in the paper's main results."""

    nashmtl_update_every: int = setting(
        1, "solve Nash-MTL's weights every N steps and reuse them in between, at the cost of one backward (nashmtl)", minimum=1
    )


@register_strategy("nashmtl")
class NashMTL(GradientStrategy):
    """Nash-MTL: the update as the Nash bargaining solution between the tasks.

    The shared update ``d = sum_t a_t g_t`` with ``a > 0`` solving ``G G^T a = 1 / a``, the Nash
    bargaining solution of the tasks' utilities ``g_t . d`` within a ball (then ``g_t . d = 1 / a_t``
    for every task, and ``|d|^2 = T``).

    Solved by Newton's method to the root itself (``solvers.nash_weights``: a ridged solve, then
    Newton steps on ``G G^T`` unridged); the authors approximate it with a sequence of convex
    programs. As in their code the weighted loss ``sum_t a_t L_t`` reaches
    every parameter, the task-specific ones included; with ``nashmtl_update_every = k`` the
    weights are solved every k steps and the steps in between take one backward of that weighted
    loss (the paper's speed-up). Not done here: the reference code also clips the shared
    gradient's norm at 1, a training setting rather than the method. The recorded task weights
    are ``a`` scaled to sum to T (their scale only sets the step length).

    Reference: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning
    as a Bargaining Game", ICML 2022. https://arxiv.org/abs/2202.01017
    """

    Config = NashMTLConfig
    task_specific = "weighted"

    def __init__(self, task_num: int, config: NashMTLConfig | None = None):
        super().__init__(task_num, config)
        self.register_buffer("alpha", torch.ones(task_num))
        self.register_buffer("solved", torch.tensor(False))

    def backward(self, losses: TaskLosses, context: StepContext) -> None:
        if bool(self.solved) and context.step % self.config.nashmtl_update_every != 0:
            total = (self.alpha.to(losses.tasks.dtype) * losses.tasks).sum()
            (total if losses.auxiliary is None else total + losses.auxiliary).backward()
            self.layout(context.model).average_gradients(context)
            return
        super().backward(losses, context)

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        alpha = nash_weights(gram)
        self.alpha.copy_(torch.from_numpy(alpha))
        self.solved.fill_(True)
        return alpha

    def update(self, matrix: torch.Tensor, layout: GradientLayout, losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        update = super().update(matrix, layout, losses, context)
        self.last_weights.mul_(self.task_num / self.last_weights.sum().clamp_min(1e-30))
        return update
