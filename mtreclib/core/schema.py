"""The contract between data and models: a feature schema and a batch.

A dataset yields a ``FeatureSchema`` (what its fields and tasks are) and ``Batch``es (the encoded
rows); a model is built from the schema and maps a batch's features to one logit per task.

Embedded fields come in one fixed order, which every model and the split products rely on:
the single-valued categorical fields, then the multi-valued ones (bags), then the numerical
features as one field (only when there are any).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

ROLES = ("user", "item", "author", "context")
POOLINGS = ("mean", "sum")


@dataclass(frozen=True)
class BagField:
    """A multi-valued categorical field (tags, categories, recent items): one pooled embedding.

    Attributes:
        name: the column's name.
        vocab_size: ids are ``0 .. vocab_size - 1``.
        pooling: ``"mean"`` or ``"sum"`` of the values' embeddings (weighted when ``weighted``).
        weighted: each value carries a weight (Ali-CCP's feature values).
        role: ``"user"``, ``"item"``, ``"author"``, ``"context"`` or None.
    """

    name: str
    vocab_size: int
    pooling: str = "mean"
    weighted: bool = False
    role: str | None = None

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"bag field {self.name!r}: vocab_size must be positive, got {self.vocab_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"bag field {self.name!r}: pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"bag field {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")


@dataclass(frozen=True)
class FeatureSchema:
    """What a dataset yields and what a model is built from.

    Attributes:
        field_dims: vocabulary size of each single-valued categorical field (ids ``0 .. dim - 1``).
        numerical_num: number of numerical features (0 for none).
        task_names: one name per binary task, in label-column order.
        field_names: one name per single-valued field (default ``categorical_1 ..``).
        field_roles: per single-valued field, its role (``ROLES``) or None; empty means no roles.
        bags: the multi-valued categorical fields.
        task_implies: per task, the name of the task that a positive of it implies (a purchase is
            also a click: ``("", "click")`` for click, conversion), or ``""``; empty means none.
            Models that rely on the relation (ESMM) read it.
    """

    field_dims: tuple[int, ...]
    numerical_num: int
    task_names: tuple[str, ...] = ("click", "conversion")
    field_names: tuple[str, ...] = ()
    field_roles: tuple[str | None, ...] = ()
    bags: tuple[BagField, ...] = ()
    task_implies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_dims", tuple(int(d) for d in self.field_dims))
        object.__setattr__(self, "task_names", tuple(self.task_names))
        object.__setattr__(self, "bags", tuple(self.bags))
        if not self.field_dims and not self.bags:
            raise ValueError("a schema needs at least one categorical field")
        if self.field_dims and min(self.field_dims) < 1:
            raise ValueError(f"field_dims must be positive, got {self.field_dims}")
        if self.numerical_num < 0:
            raise ValueError(f"numerical_num must be >= 0, got {self.numerical_num}")
        if not self.task_names:
            raise ValueError("a schema needs at least one task")
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"task names must be distinct, got {self.task_names}")
        if not self.field_names:
            object.__setattr__(self, "field_names", tuple(f"categorical_{i}" for i in range(1, len(self.field_dims) + 1)))
        if len(self.field_names) != len(self.field_dims):
            raise ValueError(f"{len(self.field_names)} field names for {len(self.field_dims)} fields")
        if self.field_roles and len(self.field_roles) != len(self.field_dims):
            raise ValueError(f"{len(self.field_roles)} field roles for {len(self.field_dims)} fields")
        for role in self.field_roles:
            if role is not None and role not in ROLES:
                raise ValueError(f"field role must be one of {', '.join(ROLES)} or None, got {role!r}")
        if self.task_implies:
            if len(self.task_implies) != len(self.task_names):
                raise ValueError(f"{len(self.task_implies)} task relations for {len(self.task_names)} tasks")
            for task, parent in zip(self.task_names, self.task_implies):
                if parent and (parent not in self.task_names or self.task_names.index(parent) >= self.task_names.index(task)):
                    raise ValueError(f"task {task!r} implies {parent!r}, which must be an earlier task")

    @property
    def field_num(self) -> int:
        """Single-valued categorical fields F."""
        return len(self.field_dims)

    @property
    def bag_num(self) -> int:
        """Multi-valued categorical fields K."""
        return len(self.bags)

    @property
    def task_num(self) -> int:
        return len(self.task_names)

    def parent_task(self, task: int) -> int | None:
        """The index of the task that task ``task``'s positives imply, or None."""
        if not self.task_implies or not self.task_implies[task]:
            return None
        return self.task_names.index(self.task_implies[task])

    def role_fields(self, role: str) -> tuple[int, ...]:
        """Positions among the embedded fields of the fields with ``role`` (single, then bags)."""
        single = [i for i, r in enumerate(self.field_roles) if r == role]
        bags = [self.field_num + k for k, b in enumerate(self.bags) if b.role == role]
        return tuple(single + bags)

    def with_tasks(self, task_num: int) -> FeatureSchema:
        """The same features with only the first ``task_num`` tasks."""
        if not 1 <= task_num <= self.task_num:
            raise ValueError(f"task_num must be between 1 and {self.task_num} for tasks {self.task_names}, got {task_num}")
        implies = self.task_implies[:task_num] if self.task_implies else ()
        return replace(self, task_names=self.task_names[:task_num], task_implies=implies)

    def describe(self) -> dict:
        """The schema as JSON-ready data (checkpoints carry it)."""
        return {
            "field_dims": list(self.field_dims),
            "numerical_num": self.numerical_num,
            "task_names": list(self.task_names),
            "field_names": list(self.field_names),
            "field_roles": list(self.field_roles),
            "bags": [vars(b).copy() for b in self.bags],
            "task_implies": list(self.task_implies),
        }

    @classmethod
    def from_description(cls, data: dict) -> FeatureSchema:
        """Inverse of ``describe``."""
        return cls(
            field_dims=tuple(data["field_dims"]),
            numerical_num=data["numerical_num"],
            task_names=tuple(data["task_names"]),
            field_names=tuple(data.get("field_names", ())),
            field_roles=tuple(data.get("field_roles", ())),
            bags=tuple(BagField(**b) for b in data.get("bags", ())),
            task_implies=tuple(data.get("task_implies", ())),
        )


class Bag(NamedTuple):
    """The values of one multi-valued field for a batch of B rows, flat (no padding).

    Row ``b``'s values are ``values[offsets[b]:offsets[b + 1]]``; a row may have none.

    Attributes:
        values: (N,) int64 ids.
        offsets: (B + 1,) int64, ``offsets[0] == 0``, ``offsets[B] == N``.
        weights: (N,) float32 per-value weights, or None.
    """

    values: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor | None = None

    def slice(self, start: int, stop: int) -> Bag:
        """Rows ``start:stop``."""
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        weights = None if self.weights is None else self.weights[first:last]
        return Bag(self.values[first:last], self.offsets[start : stop + 1] - first, weights)

    def to(self, device: torch.device, non_blocking: bool = False) -> Bag:
        weights = None if self.weights is None else self.weights.to(device, non_blocking=non_blocking).float()
        return Bag(self.values.to(device, non_blocking=non_blocking).long(), self.offsets.to(device, non_blocking=non_blocking).long(), weights)


class Batch(NamedTuple):
    """One mini-batch.

    Attributes:
        categorical: (B, F) int64 ids, already within each field's vocabulary.
        numerical: (B, M) float32 features.
        labels: (B, T) float32 in {0, 1}.
        bags: one ``Bag`` per multi-valued field, in the schema's order.
        weights: (B,) float32 sample weights, or None (every row weighs 1).
        group: (B,) int64 group ids (search page, session, user), or None.
    """

    categorical: torch.Tensor
    numerical: torch.Tensor
    labels: torch.Tensor
    bags: tuple[Bag, ...] = ()
    weights: torch.Tensor | None = None
    group: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of rows B."""
        return self.labels.shape[0]

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` of every tensor (views, no copy)."""
        return Batch(
            self.categorical[start:stop],
            self.numerical[start:stop],
            self.labels[start:stop],
            tuple(bag.slice(start, stop) for bag in self.bags),
            None if self.weights is None else self.weights[start:stop],
            None if self.group is None else self.group[start:stop],
        )
