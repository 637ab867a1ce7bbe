"""GradNorm: loss weights learned so that the tasks' gradient norms train at balanced rates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtreclib.core.settings import search_range, setting
from mtreclib.mto.base import StepContext
from mtreclib.mto.gradients import GradientConfig, GradientStrategy
from mtreclib.mto.registry import register_strategy


@dataclass(frozen=True)
class GradNormConfig(GradientConfig):
    """GradNorm's settings: the paper's alpha = 1.5 (its NYUv2 runs)."""

    gradnorm_alpha: float = setting(
        1.5, "GradNorm's asymmetry: how strongly slow tasks are pulled up (gradnorm)", minimum=0, search=search_range(0.0, 3.0)
    )


@register_strategy("gradnorm")
class GradNorm(GradientStrategy):
    """GradNorm: loss weights learned so that the tasks' gradient norms train at balanced rates.

    Loss weights ``w`` (summing to T, learned by the run's optimizer) that minimise
    ``L_grad = sum_t |w_t |g_t| - mean(w |g|) r_t^alpha|``, the target held constant, where
    ``r_t = (L_t / L_t(0)) / mean_k (L_k / L_k(0))`` is task t's relative inverse training rate.
    Since ``|grad (w_t L_t)| = w_t |g_t|``, its gradient is ``sign(.) |g_t|``: no second-order
    backward. The update is the weighted loss's gradient ``sum_t (w_t / T) g_t`` on every
    parameter (``/ T``: equal weights are ``ew``); the weights are renormalised to sum T before
    each step.

    The paper takes ``|g_t|`` at the last shared layer, which no model-independent rule can name;
    here it is over all shared parameters (as LibMTL does), with task-owned elements left out.

    Reference: Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for
    Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018. https://arxiv.org/abs/1711.02257
    """

    Config = GradNormConfig
    task_specific = "weighted"

    def __init__(self, task_num: int, config: GradNormConfig | None = None):
        super().__init__(task_num, config)
        self.loss_weights = nn.Parameter(torch.ones(task_num))
        self.register_buffer("initial_losses", torch.zeros(task_num))
        self.register_buffer("started", torch.tensor(False))

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        with torch.no_grad():
            positive = self.loss_weights.clamp_min(1e-6)
            self.loss_weights.copy_(positive * self.task_num / positive.sum())
        if not bool(self.started):
            self.initial_losses.copy_(losses)
            self.started.fill_(True)
        norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
        ratios = losses.numpy() / np.maximum(self.initial_losses.double().cpu().numpy(), 1e-12)
        weights = self.loss_weights.detach().double().cpu().numpy()
        weighted = weights * norms  # (T,) |grad (w_t L_t)|
        target = weighted.mean() * (ratios / ratios.mean()) ** self.config.gradnorm_alpha
        grad = torch.from_numpy(np.sign(weighted - target) * norms).to(self.loss_weights)
        self.loss_weights.grad = grad if self.loss_weights.grad is None else self.loss_weights.grad + grad
        return weights / self.task_num
