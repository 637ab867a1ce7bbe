"""Datasets by name: the built-in synthetic ones, or a folder in the processed layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtreclib.data import synthetic
from mtreclib.data.cache import clamp_split, open_split
from mtreclib.data.processed import CATEGORICAL_COLUMNS, LABEL_COLUMNS
from mtreclib.data.table import MultiTaskTable
from mtreclib.errors import UserError
from mtreclib.schema import FeatureSchema

# Conversion is recorded only on clicked rows: the second task is CTCVR.
ALIEXPRESS_IMPLIES = ("", "click")
# categorical_1 .. 9 come from the user (search page) file, 10 .. 16 from the item file (see
# data/raw.py; the synthetic generator follows the same split): what PEPNet's gates read.
ALIEXPRESS_ROLES = ("user",) * 9 + ("item",) * 7


@dataclass(frozen=True)
class Dataset:
    """Named splits and the schema models are built from.

    Attributes:
        schema: the features and the trained tasks.
        train, test: the splits.
        valid: a validation split of the dataset's own, or None (one is carved from ``train``).
        encoding: how raw rows become the encoded arrays (vocabularies, transforms), JSON-ready;
            checkpoints carry it so that prediction encodes new rows the same way.
        default_tasks: the tasks trained when none are named.
    """

    name: str
    schema: FeatureSchema
    train: MultiTaskTable
    test: MultiTaskTable
    valid: MultiTaskTable | None = None
    encoding: dict[str, Any] = field(default_factory=dict)
    default_tasks: tuple[str, ...] = ()

    def select_tasks(self, names: Sequence[str] = (), task_num: int | None = None) -> Dataset:
        """The dataset with the tasks ``names`` (default: its default tasks), then only the first ``task_num``."""
        names = tuple(names) or self.default_tasks or self.schema.task_names
        unknown = [name for name in names if name not in self.schema.task_names]
        if unknown:
            raise UserError(f"--tasks: dataset {self.name} has no task {unknown[0]!r}; its tasks: {', '.join(self.schema.task_names)}")
        if task_num is not None:
            if task_num > len(names):
                raise UserError(f"--task-num {task_num}: dataset {self.name} has {len(names)} tasks ({', '.join(names)})")
            names = names[:task_num]
        columns = tuple(self.schema.task_names.index(name) for name in names)
        implies = []
        for position, column in enumerate(columns):
            parent = self.schema.task_implies[column] if self.schema.task_implies else ""
            implies.append(parent if parent in names[:position] else "")  # a relation to a task left out is dropped
        schema = replace(self.schema, task_names=names, task_implies=tuple(implies) if any(implies) else ())

        def pick(table: MultiTaskTable | None) -> MultiTaskTable | None:
            return None if table is None else table.with_tasks(columns)

        return replace(self, schema=schema, train=pick(self.train), test=pick(self.test), valid=pick(self.valid))


def builtin_datasets() -> list[str]:
    """Names that need no download."""
    return list(synthetic.PRESETS)


def vocabulary(train: MultiTaskTable) -> tuple[int, ...]:
    """Per-field vocabulary sizes: the training file's largest id + 1, plus one out-of-vocabulary slot.

    The original sized embeddings from the training file alone, so a larger id in the test file
    indexed out of range. Here every id the training data never reached (``>= max + 1``) maps to
    the field's last row, ``max + 1``, which no training row selects: an unknown id gets its
    field's one untrained embedding instead of a crash or another id's embedding.
    """
    return vocabulary_from_max(train.categorical.max(axis=0))


def vocabulary_from_max(categorical_max: Sequence[int]) -> tuple[int, ...]:
    """The vocabulary rule from each field's largest training id (recorded in the cache)."""
    return tuple(int(m) + 2 for m in categorical_max)


def clamp_to_vocabulary(table: MultiTaskTable, field_dims: tuple[int, ...]) -> MultiTaskTable:
    """``table`` with every id beyond its field's vocabulary mapped to the out-of-vocabulary slot."""
    limit = np.asarray(field_dims, dtype=table.categorical.dtype) - 1
    if (table.categorical <= limit).all():
        return table
    return replace(table, categorical=np.minimum(table.categorical, limit))


def aliexpress_schema(field_dims: tuple[int, ...], numerical_num: int) -> FeatureSchema:
    return FeatureSchema(
        field_dims,
        numerical_num,
        LABEL_COLUMNS,
        field_names=CATEGORICAL_COLUMNS[: len(field_dims)],
        field_roles=ALIEXPRESS_ROLES[: len(field_dims)],
        task_implies=ALIEXPRESS_IMPLIES,
    )


def identity_encoding(field_dims: Sequence[int]) -> dict[str, Any]:
    """The encoding of integer ids used as they are, capped at the out-of-vocabulary slot."""
    return {"kind": "identity", "field_dims": [int(d) for d in field_dims]}


def from_tables(name: str, train: MultiTaskTable, test: MultiTaskTable) -> Dataset:
    """A dataset of in-memory tables in the AliExpress layout: vocabularies from ``train``, ``test`` capped to them."""
    field_dims = vocabulary(train)
    schema = aliexpress_schema(field_dims, train.numerical.shape[1])
    return Dataset(name, schema, train, clamp_to_vocabulary(test, field_dims), encoding=identity_encoding(field_dims))


def find_dataset(name: str, data_dir: str | Path = "data") -> Path | None:
    """Where dataset ``name`` is: None for a built-in one, else its folder; a user error when nowhere."""
    if name in synthetic.PRESETS:
        return None
    folder = Path(data_dir) / name
    if not folder.is_dir():
        raise UserError(
            f"dataset {name!r} not found: expected {folder}/train.csv and {folder}/test.csv "
            f"in the processed layout (see the README, 'Data'); built-in datasets: {', '.join(builtin_datasets())}"
        )
    return folder


def load_dataset(name: str, data_dir: str | Path = "data") -> Dataset:
    """The built-in dataset ``name``, or the processed layout in ``data_dir/name/{train,test}.csv``."""
    folder = find_dataset(name, data_dir)
    if folder is None:
        data = synthetic.generate(synthetic.PRESETS[name])
        train = replace(data.train, group=data.train_search_id)
        test = replace(data.test, group=data.test_search_id)
        return from_tables(name, train, test)
    return load_processed(name, folder)


def load_processed(name: str, folder: Path) -> Dataset:
    """``folder/train.csv`` and ``test.csv`` through the memory-mapped cache (built on first use).

    Nothing is copied into memory: the training arrays are the cache's maps, the vocabulary comes
    from the largest ids recorded when the cache was built, and test ids beyond it are capped in
    a memory-mapped file of their own (``clamp_split``).
    """
    train = open_split(folder / "train.csv")
    test = open_split(folder / "test.csv")
    field_dims = vocabulary_from_max(train.categorical_max)
    test = clamp_split(test, np.asarray(field_dims) - 1)
    schema = aliexpress_schema(field_dims, train.table.numerical.shape[1])
    return Dataset(
        name,
        schema,
        replace(train.table, group=train.search_id),
        replace(test.table, group=test.search_id),
        encoding=identity_encoding(field_dims),
    )
