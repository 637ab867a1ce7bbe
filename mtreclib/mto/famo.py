"""FAMO: fast adaptive multitask optimisation, balancing the rates at which the losses fall at O(1) cost."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtreclib.core.settings import Settings, search_range, setting
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext, Strategy
from mtreclib.mto.registry import register_strategy

_EPS = 1e-8


@dataclass(frozen=True)
class FAMOConfig(Settings):
    """FAMO's settings: the paper's task-logit learning rate 0.025 and decay 1e-3 (its Algorithm 2)."""

    famo_lr: float = setting(0.025, "learning rate of FAMO's task logits (Adam) (famo)", above=0, search=search_range(1e-3, 0.1, log=True))
    famo_decay: float = setting(
        1e-3, "FAMO's regularisation gamma of the task logits (Adam's weight decay) (famo)", minimum=0, search=search_range(1e-5, 1e-2, log=True)
    )


@register_strategy("famo")
class FAMO(Strategy):
    """FAMO: loss weights that balance the rates at which the losses fall, at the cost of one forward pass.

    Task logits ``xi``, ``z = softmax(xi)``; each step descends along
    ``d = sum_t c z_t grad L_t / L_t`` with ``c = (sum_t z_t / L_t)^{-1}`` (the gradient of
    ``c sum_t z_t log L_t``: weights ``c z_t / L_t`` summing to one). After the optimizer step the
    same batches' losses are computed again with the updated model (``context.recompute_losses``:
    one more forward pass) and ``xi`` takes an Adam step along ``delta = J_z^T (log L_before -
    log L_after)`` plus the decay ``gamma xi``: tasks whose loss fell less gain weight.

    Under torchrun both losses are averaged over the ranks first, so every rank keeps the same
    ``xi``. The extra forward pass runs in training mode (dropout, BatchNorm statistics), as in
    the authors' code. Not done here: their clipping of the shared gradient's norm at 1.

    Reference: Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.
    https://arxiv.org/abs/2306.03792
    """

    Config = FAMOConfig

    def __init__(self, task_num: int, config: FAMOConfig | None = None):
        super().__init__(task_num, config)
        self.register_buffer("logits", torch.zeros(task_num))
        self.register_buffer("moment", torch.zeros(task_num))  # Adam's first moment
        self.register_buffer("second_moment", torch.zeros(task_num))
        self.register_buffer("updates", torch.tensor(0))
        self.register_buffer("step_losses", torch.zeros(task_num))

    def combine(self, losses: TaskLosses, context: StepContext) -> torch.Tensor:
        values = context.all_reduce_mean(losses.tasks.detach().float())
        self.step_losses.copy_(values)
        inverse = torch.softmax(self.logits, 0) / (values + _EPS)
        return self.weighted(losses, inverse / inverse.sum())

    def after_step(self, context: StepContext) -> None:
        if context.recompute_losses is None:
            return
        after = context.all_reduce_mean(context.recompute_losses().tasks.detach().float())
        delta = (self.step_losses + _EPS).log() - (after + _EPS).log()
        z = torch.softmax(self.logits, 0)
        grad = z * (delta - (z * delta).sum()) + self.config.famo_decay * self.logits  # J_softmax^T delta + gamma xi
        self._adam(grad)

    def _adam(self, grad: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.updates += 1
        step = int(self.updates)
        self.moment.mul_(betas[0]).add_(grad, alpha=1 - betas[0])
        self.second_moment.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
        corrected = self.moment / (1 - betas[0] ** step)
        scale = (self.second_moment / (1 - betas[1] ** step)).sqrt().add_(eps)
        self.logits.sub_(self.config.famo_lr * corrected / scale)
