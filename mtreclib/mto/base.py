"""The interface between the trainer and a multi-task optimisation strategy.

Each step the model gives its per-task losses (``TaskLosses``: a (T,) tensor and an optional
auxiliary term); the strategy turns them into gradients on the model's parameters (it runs the
backward pass itself), and the trainer then steps the optimizer. Loss-weighting methods scale
the losses and call backward once; gradient methods take per-task gradients of the shared
parameters (``model.shared_parameters()``) or of the shared representation and combine them.

The trainer knows only this interface: no method is special-cased in the loop. Besides
``backward`` it calls ``attach(model)`` once before the first step (a strategy that reads the
model's shared representation hooks it there) and ``after_step(context)`` after every optimizer
step (FAMO compares the step's losses with those of the updated model on the same batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mtreclib.core.settings import Settings
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
        recompute_losses: the step's losses computed again on the same batches (after the
            optimizer step, in ``after_step``: with the updated weights); None outside a trainer.
    """

    model: MultiTaskModel
    step: int = 0
    epoch: int = 0
    world_size: int = 1
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor
    recompute_losses: Callable[[], TaskLosses] | None = None


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

    def attach(self, model: MultiTaskModel) -> None:
        """Called once with the model before its first training step (MGDA-UB hooks its representation)."""

    def after_step(self, context: StepContext) -> None:
        """Called after every optimizer step (FAMO updates its task logits here)."""

    def end_epoch(self, task_losses: torch.Tensor) -> None:
        """Called after every epoch with the (T,) mean training loss of each task (DWA uses it)."""

    def task_weights(self) -> list[float]:
        """The last step's per-task weights, scaled so that equal weighting reads 1 for each task."""
        return [float(w) for w in self.last_weights]


def new_seed() -> torch.Tensor:
    """A seed for a strategy's own random draws, taken from PyTorch's generator when it is built.

    Built after ``torch.manual_seed(seed)`` (as ``mtrec`` builds it, before the ranks' dropout
    seeds part) it is the same on every rank and follows the run's seed; ``step_generator``
    makes sure of the former anyway.
    """
    return torch.randint(0, 2**52, (), dtype=torch.int64)


def step_generator(strategy: Strategy, seed: torch.Tensor, context: StepContext) -> torch.Generator:
    """A CPU generator for this step's draws: a function of (seed, step), so that every rank draws
    the same numbers and a resumed run the numbers it would have drawn.

    With several processes the ranks agree on the seed once (its mean over ranks) at their first
    draw, in case they were built from different random states.
    """
    if context.world_size > 1 and not getattr(strategy, "_seed_agreed", False):
        agreed = context.all_reduce_mean(seed.to(torch.float64))  # exact: seeds are below 2^52
        seed.copy_(agreed.round().to(seed.dtype))
        strategy._seed_agreed = True
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + context.step) % 2**63)
