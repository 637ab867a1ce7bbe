"""The interface the trainer knows: per-task logits and a training loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtreclib.schema import Batch, FeatureSchema


def multitask_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over tasks of each task's mean binary cross-entropy: (B, T) logits and labels -> ()."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels)


class MultiTaskModel(nn.Module):
    """Base class of every model.

    ``forward(categorical, numerical)`` maps (B, F) int64 ids and (B, M) floats to (B, T) logits,
    one per task; no sigmoid inside, the loss owns it.

    The trainer makes one optimizer step from ``batches_per_step`` consecutive batches and
    ``training_loss``. A model with its own way to learn (MetaHeac's meta-learning) overrides
    these two; the trainer never asks which model it trains.
    """

    batches_per_step: int = 1

    def __init__(self, schema: FeatureSchema):
        super().__init__()
        self.schema = schema
        self.task_num = schema.task_num

    def training_loss(self, batches: Sequence[Batch]) -> torch.Tensor:
        """The loss of one optimizer step: the mean per-task BCE over ``batches``."""
        losses = [multitask_bce(self(b.categorical, b.numerical), b.labels) for b in batches]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()
