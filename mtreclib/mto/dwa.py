"""Dynamic weight average: weights from the rate at which each task's loss fell over the last epochs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtreclib.core.settings import Settings, search_range, setting
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext, Strategy
from mtreclib.mto.registry import register_strategy


@dataclass(frozen=True)
class DWAConfig(Settings):
    """DWA's settings: the paper's temperature 2."""

    dwa_temperature: float = setting(
        2.0, "DWA's softmax temperature: larger is closer to equal weights (dwa)", above=0, search=search_range(0.5, 5.0, log=True)
    )


@register_strategy("dwa")
class DynamicWeightAverage(Strategy):
    """Dynamic weight average: weights from the ratio of each task's last two epoch losses.

    ``w_t = T softmax_t(r_t / temperature)`` with ``r_t = L_t(e-1) / L_t(e-2)``, the ratio of
    task t's mean training losses over the last two epochs; equal weights for the first two
    epochs. The loss is ``sum_t (w_t / T) L_t`` (``/ T``: equal weights are ``ew``). The epoch
    losses are those the trainer averages over every rank, so all ranks weigh alike.

    Reference: Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.
    https://arxiv.org/abs/1803.10704
    """

    Config = DWAConfig

    def __init__(self, task_num: int, config: DWAConfig | None = None):
        super().__init__(task_num, config)
        self.register_buffer("epoch_losses", torch.zeros(2, task_num))  # rows: epoch e-2, epoch e-1
        self.register_buffer("epochs_seen", torch.tensor(0))

    def end_epoch(self, task_losses: torch.Tensor) -> None:
        self.epoch_losses.copy_(torch.stack([self.epoch_losses[1], task_losses.to(self.epoch_losses)]))
        self.epochs_seen += 1

    def combine(self, losses: TaskLosses, context: StepContext) -> torch.Tensor:
        if int(self.epochs_seen) < 2:
            weights = self.epoch_losses.new_full((self.task_num,), 1.0 / self.task_num)
        else:
            rates = self.epoch_losses[1] / self.epoch_losses[0].clamp_min(1e-12)
            weights = torch.softmax(rates / self.config.dwa_temperature, dim=0)
        return self.weighted(losses, weights)
