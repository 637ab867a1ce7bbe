"""The dense optimizer and its learning-rate schedule, built from ``TrainConfig``: PyTorch's own.

``optimizer``: ``torch.optim.Adam`` (the original's; weight decay is an L2 term added to the
gradient), ``AdamW`` (weight decay decoupled from the gradient: each step shrinks the weights by
``lr * weight_decay``) or ``Adagrad`` (weight decay as Adam's), fused into one kernel per step
where PyTorch can. It trains the model's parameters and the strategy's; on the torchrec backend
the tables are none of them and keep their own fused optimizer (``--embedding-optimizer``).

``lr_schedule``: the learning rate of each optimizer step ``s`` (0-based, over the whole run),
a ``torch.optim.lr_scheduler`` stepped after every optimizer step:

- ``constant``: ``lr`` (no scheduler at all: the computation of a run without one).
- ``warmup-cosine``: with W = ``warmup_steps`` and N the run's planned steps
  (``epochs * steps_per_epoch``, at most ``max_steps``), ``lr * (s + 1) / (W + 1)`` for s < W
  (``LambdaLR``), then ``lr_min + (lr - lr_min) * (1 + cos(pi * (s - W) / (N - W))) / 2``
  (``CosineAnnealingLR``), in sequence (``SequentialLR``): a line rising to ``lr`` at step W,
  then half a cosine that would reach ``lr_min`` one step after the last.
- ``step``: ``lr * lr_gamma ** (s // (lr_step_epochs * steps_per_epoch))`` (``StepLR``): the
  rate of epoch e is ``lr * lr_gamma ** (e // lr_step_epochs)``.

Counting in optimizer steps keeps one cadence for every schedule and makes the state of a run
after any epoch the scheduler's ``state_dict``, which the trainer checkpoints with the optimizer's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import lr_scheduler

from mtreclib.config.experiment import TrainConfig
from mtreclib.core.errors import UserError

OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}


# Fused Adam and AdamW: CUDA since PyTorch 2.0, CPU since 2.4; fused Adagrad: CPU only. PyTorch
# tells an unsupported device only at the first step, so the devices with a kernel are named here.
FUSED_ONLY_ON: dict[type[torch.optim.Optimizer], tuple[str, ...]] = {torch.optim.Adagrad: ("cpu",)}


def _fused(cls: type[torch.optim.Optimizer], parameters: Iterable[nn.Parameter], device: torch.device, **kwargs: float) -> torch.optim.Optimizer:
    """``cls`` fused into one kernel per step where PyTorch has that kernel; the same update, in fewer passes."""
    parameters = list(parameters)
    if device.type in FUSED_ONLY_ON.get(cls, (device.type,)):
        try:
            return cls(parameters, **kwargs, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(parameters, **kwargs, foreach=device.type == "cuda")


def adam(parameters: Iterable[nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam as the original configures it."""
    return _fused(torch.optim.Adam, parameters, device, lr=config.lr, weight_decay=config.weight_decay)


def build_optimizer(parameters: Iterable[nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``parameters``, with ``config.lr`` and ``config.weight_decay``."""
    return _fused(OPTIMIZER_CLASSES[config.optimizer], parameters, device, lr=config.lr, weight_decay=config.weight_decay)


def planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The optimizer steps the run makes if it never stops early: every epoch's, at most ``max_steps``."""
    steps = config.epochs * steps_per_epoch
    return steps if config.max_steps is None else min(steps, config.max_steps)


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> lr_scheduler.LRScheduler | None:
    """The scheduler of ``config.lr_schedule`` on ``optimizer`` (None for ``constant``), to step after each optimizer step.

    Raises ``UserError`` when the run is too short for its warm-up.
    """
    if config.lr_schedule == "constant":
        return None
    if config.lr_schedule == "step":
        assert config.lr_step_epochs is not None  # TrainConfig.check
        return lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs * max(steps_per_epoch, 1), gamma=config.lr_gamma)
    total, warmup = planned_steps(config, steps_per_epoch), config.warmup_steps
    if warmup >= total:
        raise UserError(
            f"warmup_steps (--warmup-steps) must be below the run's {total:,} optimizer steps "
            f"({config.epochs} epochs of {steps_per_epoch:,}{'' if config.max_steps is None else f', at most --max-steps {config.max_steps}'}), got {warmup:,}"
        )
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=config.lr_min)
    if warmup == 0:
        return cosine
    rise = lr_scheduler.LambdaLR(optimizer, lambda step: (step + 1) / (warmup + 1))
    return lr_scheduler.SequentialLR(optimizer, [rise, cosine], milestones=[warmup])
