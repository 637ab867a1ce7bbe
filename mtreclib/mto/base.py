"""The interface between the trainer and a multi-task optimisation strategy.

Each step the model gives its per-task losses (``TaskLosses``: a (T,) tensor and an optional
auxiliary term); the strategy turns them into gradients on the model's parameters (it runs the
backward pass itself), and the trainer then steps the optimizer. Loss-weighting methods scale
the losses and call backward once; gradient methods take per-task gradients of the shared
parameters (``model.shared_parameters()``) or of the shared representation and combine them.

The trainer knows only this interface: no method is special-cased in the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mtreclib.config.settings import Settings
from mtreclib.models.base import MultiTaskModel, TaskLosses


@dataclass(frozen=True)
class NoSettings(Settings):
    """A strategy without settings of its own."""


@dataclass
class StepContext:
    """What a strategy may need besides the losses.

    Attributes:
        model: the model being trained (``shared_parameters()``, ``named_parameters()``).
        step: the optimizer step about to be taken (0-based, over the whole run).
        epoch: the current epoch (0-based).
        world_size: training processes; with more than one and ``Strategy.syncs_gradients``,
            the strategy must average what it computes over the processes with ``all_reduce_mean``
            so that every rank takes the same decision and applies the same update.
        all_reduce_mean: element-wise mean of a tensor over all processes (the tensor itself
            with one process).
    """

    model: MultiTaskModel
    step: int = 0
    epoch: int = 0
    world_size: int = 1
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor


class Strategy(nn.Module):
    """Base of every strategy: equal weights (``ew``) unless overridden.

    A strategy is a module so that its learnable weights (uncertainty weighting's log variances)
    and its state (moving averages, previous losses) are saved in checkpoints and restored on
    resume. Parameters it registers are trained by the run's optimizer together with the
    model's; state it updates by its own rule lives in buffers.

    Attributes:
        Config: the strategy's typed settings.
        syncs_gradients: under DistributedDataParallel the trainer then leaves gradient
            averaging to the strategy (gradient methods take several backward passes, which
            DDP's one-backward-per-step synchronisation cannot follow).
    """

    Config: ClassVar[type[Settings]] = NoSettings
    syncs_gradients: ClassVar[bool] = False

    def __init__(self, task_num: int, config: Settings | None = None):
        super().__init__()
        self.task_num = task_num
        self.config = config if config is not None else self.Config()
        self.register_buffer("last_weights", torch.ones(task_num))

    def combine(self, losses: TaskLosses, context: StepContext) -> torch.Tensor:
        """The scalar whose backward this step takes (loss-weighting methods override this)."""
        weights = self.last_weights.new_full((self.task_num,), 1.0 / self.task_num)
        return self.weighted(losses, weights)

    def weighted(self, losses: TaskLosses, weights: torch.Tensor) -> torch.Tensor:
        """``sum_t w_t L_t`` plus the auxiliary term; records ``weights`` for the epoch logs."""
        self.last_weights.copy_(weights.detach() * self.task_num)
        total = (weights.to(losses.tasks.dtype) * losses.tasks).sum()
        return total if losses.auxiliary is None else total + losses.auxiliary

    def backward(self, losses: TaskLosses, context: StepContext) -> None:
        """Set the gradients of this step on the model's (and the strategy's own) parameters."""
        self.combine(losses, context).backward()

    def end_epoch(self, task_losses: torch.Tensor) -> None:
        """Called after every epoch with the (T,) mean training loss of each task (DWA uses it)."""

    def task_weights(self) -> list[float]:
        """The last step's per-task weights, scaled so that equal weighting reads 1 for each task."""
        return [float(w) for w in self.last_weights]
