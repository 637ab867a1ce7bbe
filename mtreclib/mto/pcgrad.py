"""PCGrad: project each task's gradient off the gradients it conflicts with."""

from __future__ import annotations

import numpy as np
import torch

from mtreclib.core.settings import Settings
from mtreclib.mto.base import StepContext, new_seed, step_generator
from mtreclib.mto.gradients import GradientStrategy
from mtreclib.mto.registry import register_strategy
from mtreclib.mto.solvers import pcgrad_weights


@register_strategy("pcgrad")
class PCGrad(GradientStrategy):
    """PCGrad: each task's gradient projected off the gradients it conflicts with.

    Gradient surgery: ``g_i^PC`` starts as ``g_i`` and, for every task ``j`` in random order
    with ``g_i^PC . g_j < 0``, loses its component along ``g_j``:
    ``g_i^PC <- g_i^PC - (g_i^PC . g_j / |g_j|^2) g_j``. The order holds task ``i`` itself, as
    in the authors' code and LibMTL: a ``g_i^PC`` that earlier projections turned against its
    own ``g_i`` (from three tasks on) is projected off ``g_i`` as well. The shared update is the mean
    ``(1/T) sum_i g_i^PC`` (the paper sums; the mean keeps equal weighting's scale, so that
    PCGrad on gradients without conflict is exactly ``ew``). Task-specific parameters take their
    own task's gradient.

    The random orders come from a generator seeded by the run and the step: the same on every
    rank and after a resume.

    Reference: Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task
    Learning", NeurIPS 2020. https://arxiv.org/abs/2001.06782
    """

    def __init__(self, task_num: int, config: Settings | None = None):
        super().__init__(task_num, config)
        self.register_buffer("seed", new_seed())

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        generator = step_generator(self, self.seed, context)
        tasks = torch.arange(self.task_num)
        orders = [tasks[torch.randperm(self.task_num, generator=generator)].numpy() for _ in range(self.task_num)]
        return pcgrad_weights(gram, orders) / self.task_num
