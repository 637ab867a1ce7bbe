"""The contract between data and models: a feature schema and a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class FeatureSchema:
    """What a dataset yields and what a model is built from.

    Attributes:
        field_dims: vocabulary size of each categorical field (ids are ``0 .. dim - 1``).
        numerical_num: number of numerical features.
        task_names: one name per binary task, in label-column order.
    """

    field_dims: tuple[int, ...]
    numerical_num: int
    task_names: tuple[str, ...] = ("click", "conversion")

    def __post_init__(self) -> None:
        if not self.field_dims or min(self.field_dims) < 1:
            raise ValueError(f"field_dims must be non-empty and positive, got {self.field_dims}")
        if self.numerical_num < 0:
            raise ValueError(f"numerical_num must be >= 0, got {self.numerical_num}")
        if not self.task_names:
            raise ValueError("a schema needs at least one task")

    @property
    def field_num(self) -> int:
        return len(self.field_dims)

    @property
    def task_num(self) -> int:
        return len(self.task_names)

    def with_tasks(self, task_num: int) -> FeatureSchema:
        """The same features with only the first ``task_num`` tasks."""
        if not 1 <= task_num <= self.task_num:
            raise ValueError(f"task_num must be between 1 and {self.task_num} for tasks {self.task_names}, got {task_num}")
        return FeatureSchema(self.field_dims, self.numerical_num, self.task_names[:task_num])


class Batch(NamedTuple):
    """One mini-batch.

    Attributes:
        categorical: (B, F) int64 ids, already within each field's vocabulary.
        numerical: (B, M) float32 features.
        labels: (B, T) float32 in {0, 1}.
    """

    categorical: torch.Tensor
    numerical: torch.Tensor
    labels: torch.Tensor

    @property
    def size(self) -> int:
        """Number of rows B."""
        return self.labels.shape[0]

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` of every tensor (views, no copy)."""
        return Batch(self.categorical[start:stop], self.numerical[start:stop], self.labels[start:stop])
