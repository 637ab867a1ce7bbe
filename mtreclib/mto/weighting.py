"""Loss weighting with weights chosen in advance: equal (``ew``) and user-given (``fixed``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtreclib.core.settings import ConfigError, Settings, setting
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext, Strategy
from mtreclib.mto.registry import register_strategy


@register_strategy("ew")
class EqualWeights(Strategy):
    """The mean of the task losses: ``L = (1 / T) sum_t L_t``, the original MTReclib's loss."""


@dataclass(frozen=True)
class FixedConfig(Settings):
    task_weights: tuple[float, ...] = setting((), "per-task loss weights in task order, e.g. 1,0.5 (fixed)", minimum=0)


@register_strategy("fixed")
class FixedWeights(Strategy):
    """User-given weights: ``L = sum_t w_t L_t / T`` (``--task-weights 1,0.5``; all ones is ``ew``)."""

    Config = FixedConfig

    def __init__(self, task_num: int, config: FixedConfig | None = None):
        super().__init__(task_num, config)
        weights = self.config.task_weights
        if len(weights) != task_num:
            raise ConfigError(f"task_weights (--task-weights) must give one weight per task ({task_num}), got {len(weights)}")
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32) / task_num)

    def combine(self, losses: TaskLosses, context: StepContext) -> torch.Tensor:
        return self.weighted(losses, self.weights)
