"""The contract between data and models: a feature schema and a batch.

A dataset yields a ``FeatureSchema`` (what its fields and tasks are) and ``Batch``es (the encoded
rows); a model is built from the schema and maps a batch's features to one logit per task. A
multi-valued field is a ``Bag`` (values, offsets, weights) from the encoders to the batch.

Embedded fields come in one fixed order, which every model and the split products rely on:
the single-valued categorical fields, then the multi-valued ones (bags), then the numerical
features as one field (only when there are any).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch

ROLES = ("user", "item", "author", "context")
POOLINGS = ("mean", "sum")
# A task's type: a 0/1 label whose model output is a logit (the loss owns the sigmoid), or a
# continuous target whose model output is the prediction itself.
TASK_TYPES = ("binary", "regression")
Array = np.ndarray | torch.Tensor  # a bag's arrays: NumPy (encoded rows, tables, memory maps) or tensors (batches)


@dataclass(frozen=True)
class BagField:
    """A multi-valued categorical field (tags, categories, recent items): one pooled embedding.

    Attributes:
        name: the column's name.
        vocab_size: ids are ``0 .. vocab_size - 1``.
        pooling: ``"mean"`` or ``"sum"`` of the values' embeddings (weighted when ``weighted``).
        weighted: each value carries a weight (Ali-CCP's feature values).
        role: ``"user"``, ``"item"``, ``"author"``, ``"context"`` or None.
        embedding_dim: its own embedding width, or None for the model's ``embed_dim``.
        shared_with: the field (single-valued or bag) whose table it uses, or None for its own.
    """

    name: str
    vocab_size: int
    pooling: str = "mean"
    weighted: bool = False
    role: str | None = None
    embedding_dim: int | None = None
    shared_with: str | None = None

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"bag field {self.name!r}: vocab_size must be positive, got {self.vocab_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"bag field {self.name!r}: pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"bag field {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"bag field {self.name!r}: embedding_dim must be positive, got {self.embedding_dim}")


@dataclass(frozen=True)
class FeatureSchema:
    """What a dataset yields and what a model is built from.

    Attributes:
        field_dims: vocabulary size of each single-valued categorical field (ids ``0 .. dim - 1``).
        numerical_num: number of numerical features (0 for none).
        task_names: one name per task, in label-column order.
        field_names: one name per single-valued field (default ``categorical_1 ..``).
        field_roles: per single-valued field, its role (``ROLES``) or None; empty means no roles.
        bags: the multi-valued categorical fields.
        task_implies: per task, the name of the task that a positive of it implies (a purchase is
            also a click: ``("", "click")`` for click, conversion), or ``""``; empty means none.
            Models that rely on the relation (ESMM) read it. Only between binary tasks.
        task_types: per task, ``"binary"`` or ``"regression"`` (``TASK_TYPES``); empty means every
            task is binary. A model's output for a regression task is the prediction, not a logit.
        field_embedding_dims: per single-valued field, its own embedding width or None (the
            model's ``embed_dim``); empty means none has its own.
        field_shared_with: per single-valued field, the field (single-valued or bag) whose table
            it uses, or None; empty means none shares. A bag's own are ``BagField``'s.
    """

    field_dims: tuple[int, ...]
    numerical_num: int
    task_names: tuple[str, ...] = ("click", "conversion")
    field_names: tuple[str, ...] = ()
    field_roles: tuple[str | None, ...] = ()
    bags: tuple[BagField, ...] = ()
    task_implies: tuple[str, ...] = ()
    task_types: tuple[str, ...] = ()
    field_embedding_dims: tuple[int | None, ...] = ()
    field_shared_with: tuple[str | None, ...] = ()

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
        if self.task_types:
            object.__setattr__(self, "task_types", tuple(self.task_types))
            if len(self.task_types) != len(self.task_names):
                raise ValueError(f"{len(self.task_types)} task types for {len(self.task_names)} tasks")
            for kind in self.task_types:
                if kind not in TASK_TYPES:
                    raise ValueError(f"task type must be one of {', '.join(TASK_TYPES)}, got {kind!r}")
            if "regression" not in self.task_types:
                object.__setattr__(self, "task_types", ())  # all binary: the one way to say it
        for task in range(len(self.task_names)):
            parent = self.parent_task(task)
            if parent is not None and (self.is_regression(task) or self.is_regression(parent)):
                raise ValueError(f"task {self.task_names[task]!r} implies {self.task_names[parent]!r}: a relation holds only between binary tasks")
        object.__setattr__(self, "field_embedding_dims", tuple(self.field_embedding_dims))
        object.__setattr__(self, "field_shared_with", tuple(self.field_shared_with))
        for key, values in (("field_embedding_dims", self.field_embedding_dims), ("field_shared_with", self.field_shared_with)):
            if values and len(values) != len(self.field_dims):
                raise ValueError(f"{len(values)} {key} for {len(self.field_dims)} fields")
        if any(d is not None and d < 1 for d in self.field_embedding_dims):
            raise ValueError(f"field_embedding_dims must be positive, got {self.field_embedding_dims}")
        self._check_sharing()

    def _check_sharing(self) -> None:
        """Each sharing field names an embedded field that owns its table, of the same vocabulary and width."""
        names = self.embedded_names
        sizes = (*self.field_dims, *(b.vocab_size for b in self.bags))
        dims, shared = self._own_dims(), self._shared()
        for e, owner in enumerate(shared):
            if owner is None:
                continue
            if owner not in names:
                raise ValueError(f"field {names[e]!r} shares the table of {owner!r}, which is no categorical field; fields: {', '.join(names)}")
            o = names.index(owner)
            if o == e:
                raise ValueError(f"field {names[e]!r} cannot share its own table")
            if shared[o] is not None:
                raise ValueError(f"field {names[e]!r} shares the table of {owner!r}, which shares {shared[o]!r}'s: name {shared[o]!r} directly")
            if sizes[o] != sizes[e]:
                raise ValueError(f"field {names[e]!r} shares the table of {owner!r}: vocabularies of {sizes[e]} and {sizes[o]} ids differ")
            if dims[e] is not None and dims[e] != dims[o]:
                raise ValueError(f"field {names[e]!r} shares the table of {owner!r}: embedding_dim {dims[e]} differs from its {dims[o]}")

    def _own_dims(self) -> tuple[int | None, ...]:
        single = self.field_embedding_dims or (None,) * self.field_num
        return (*single, *(b.embedding_dim for b in self.bags))

    def _shared(self) -> tuple[str | None, ...]:
        single = self.field_shared_with or (None,) * self.field_num
        return (*single, *(b.shared_with for b in self.bags))

    @property
    def embedded_names(self) -> tuple[str, ...]:
        """The categorical fields' names in embedding order: single-valued, then bags."""
        return (*self.field_names, *(b.name for b in self.bags))

    @property
    def per_field_embeddings(self) -> bool:
        """Whether some field has its own width or shares a table (else one width, one table per field)."""
        return any(d is not None for d in self._own_dims()) or any(s is not None for s in self._shared())

    def table_owners(self) -> tuple[int, ...]:
        """Per categorical field (single-valued, then bags), the position of the field whose table it uses."""
        names = self.embedded_names
        return tuple(e if owner is None else names.index(owner) for e, owner in enumerate(self._shared()))

    def embedding_dims(self, embed_dim: int) -> tuple[int, ...]:
        """Per categorical field (single-valued, then bags), its width: its own, its table's, or ``embed_dim``."""
        dims = self._own_dims()
        return tuple(dims[o] or embed_dim for o in self.table_owners())

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

    def task_type(self, task: int) -> str:
        """Task ``task``'s type: ``"binary"`` or ``"regression"``."""
        return self.task_types[task] if self.task_types else "binary"

    def is_regression(self, task: int) -> bool:
        return self.task_type(task) == "regression"

    @property
    def regression_tasks(self) -> tuple[int, ...]:
        """Positions of the regression tasks (none when every task is binary)."""
        return tuple(t for t in range(self.task_num) if self.is_regression(t))

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
        types = self.task_types[:task_num] if self.task_types else ()
        return replace(self, task_names=self.task_names[:task_num], task_implies=implies, task_types=types)

    def describe(self) -> dict:
        """The schema as JSON-ready data (checkpoints carry it)."""
        data = {
            "field_dims": list(self.field_dims),
            "numerical_num": self.numerical_num,
            "task_names": list(self.task_names),
            "field_names": list(self.field_names),
            "field_roles": list(self.field_roles),
            "bags": [{k: v for k, v in vars(b).items() if v is not None or k not in ("embedding_dim", "shared_with")} for b in self.bags],
            "task_implies": list(self.task_implies),
            # Only when some task is not binary: an all-binary schema reads as before.
            **({"task_types": list(self.task_types)} if self.task_types else {}),
        }
        if self.per_field_embeddings:  # absent otherwise: descriptions from before per-field embeddings read the same
            data["field_embedding_dims"] = list(self.field_embedding_dims)
            data["field_shared_with"] = list(self.field_shared_with)
        return data

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
            task_types=tuple(data.get("task_types", ())),
            field_embedding_dims=tuple(data.get("field_embedding_dims", ())),
            field_shared_with=tuple(data.get("field_shared_with", ())),
        )


class Bag(NamedTuple):
    """The values of one multi-valued field for N rows, flat (no padding): the one jagged type.

    The encoders make it (NumPy arrays), tables and caches hold it (arrays or memory maps) and
    batches carry it (tensors); it changes only where its arrays live, never its form. Row
    ``i``'s values are ``values[offsets[i]:offsets[i + 1]]``; a row may have none; lengths are
    derived on demand (``lengths``), as torchrec's ``KeyedJaggedTensor`` does.

    A bag is compact (``offsets[0] == 0``, ``offsets[N] == len(values)``) when it comes from the
    encoders or a batch; a table's view of some of its rows (``rows``) keeps the whole
    ``values`` and absolute offsets, so that cutting a table copies nothing.

    Attributes:
        values: (V,) ids (int32 in storage, int64 in a batch).
        offsets: (N + 1,) int64, non-decreasing.
        weights: (V,) float32 per-value weights, or None.
    """

    values: Array
    offsets: Array
    weights: Array | None = None

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray, weights: np.ndarray | None = None) -> Bag:
        """A compact bag of each row's number of values (what Arrow's list lengths give)."""
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(values, offsets, weights)

    @classmethod
    def concat(cls, bags: Sequence[Bag]) -> Bag:
        """The rows of compact NumPy bags one after the other."""
        if not bags:
            return cls(np.zeros(0, np.int32), np.zeros(1, np.int64))
        ends = np.cumsum([0] + [len(b.values) for b in bags[:-1]])
        offsets = np.concatenate([[0]] + [b.offsets[1:] + end for b, end in zip(bags, ends)]).astype(np.int64)
        weights = None if bags[0].weights is None else np.concatenate([b.weights for b in bags])
        return cls(np.concatenate([b.values for b in bags]), offsets, weights)

    @property
    def row_num(self) -> int:
        """Rows N."""
        return len(self.offsets) - 1

    def lengths(self) -> Array:
        """(N,) each row's number of values."""
        return self.offsets[1:] - self.offsets[:-1]

    def rows(self, start: int, stop: int) -> Bag:
        """Rows ``start:stop`` as a view: the same values, absolute offsets (no copy)."""
        return Bag(self.values, self.offsets[start : stop + 1], self.weights)

    def compact(self) -> Bag:
        """The bag with its rows' values alone and offsets from 0 (itself when it is compact)."""
        first, last = int(self.offsets[0]), int(self.offsets[-1])
        if first == 0 and last == len(self.values):
            return self
        weights = None if self.weights is None else self.weights[first:last]
        return Bag(self.values[first:last], self.offsets - first, weights)

    def slice(self, start: int, stop: int) -> Bag:
        """Rows ``start:stop``, compact."""
        return self.rows(start, stop).compact()

    def take(self, rows: Array) -> Bag:
        """Rows ``rows`` (B,), in that order, compact: their values gathered one row after another."""
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts  # (B,)
        if isinstance(starts, torch.Tensor):
            offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
            torch.cumsum(lengths, 0, out=offsets[1:])
            total = int(offsets[-1])
            # Each gathered value's position in the flat arrays: its row's start plus its rank in the row.
            positions = torch.repeat_interleave(starts - offsets[:-1], lengths, output_size=total) + torch.arange(total)
        else:
            offsets = np.zeros(len(rows) + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            total = int(offsets[-1])
            positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(total)
        return Bag(self.values[positions], offsets, None if self.weights is None else self.weights[positions])

    def to(self, device: torch.device, non_blocking: bool = False) -> Bag:
        """The tensors on ``device``: ids and offsets as int64, weights as float32 (widened there)."""
        weights = None if self.weights is None else self.weights.to(device, non_blocking=non_blocking).float()
        return Bag(self.values.to(device, non_blocking=non_blocking).long(), self.offsets.to(device, non_blocking=non_blocking).long(), weights)


class Batch(NamedTuple):
    """One mini-batch.

    Attributes:
        categorical: (B, F) int64 ids, already within each field's vocabulary.
        numerical: (B, M) float32 features.
        labels: (B, T) float32: 0/1 for a binary task, the (transformed) target for a regression
            task; None for rows to score.
        bags: one ``Bag`` per multi-valued field, in the schema's order.
        weights: (B,) float32 sample weights, or None (every row weighs 1).
        group: (B,) int64 group ids (search page, session, user), or None.
    """

    categorical: torch.Tensor
    numerical: torch.Tensor
    labels: torch.Tensor | None
    bags: tuple[Bag, ...] = ()
    weights: torch.Tensor | None = None
    group: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of rows B."""
        return self.categorical.shape[0]

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` of every tensor (views, no copy)."""
        return Batch(
            self.categorical[start:stop],
            self.numerical[start:stop],
            None if self.labels is None else self.labels[start:stop],
            tuple(bag.slice(start, stop) for bag in self.bags),
            None if self.weights is None else self.weights[start:stop],
            None if self.group is None else self.group[start:stop],
        )
