"""Datasets by name: the built-in synthetic ones, or a folder in the processed layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mtreclib.data import synthetic
from mtreclib.data.cache import clamp_split, open_split
from mtreclib.data.processed import LABEL_COLUMNS
from mtreclib.data.table import MultiTaskTable
from mtreclib.errors import UserError
from mtreclib.schema import FeatureSchema


@dataclass(frozen=True)
class Dataset:
    """A named pair of splits and the schema models are built from."""

    name: str
    schema: FeatureSchema
    train: MultiTaskTable
    test: MultiTaskTable


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


def from_tables(name: str, train: MultiTaskTable, test: MultiTaskTable) -> Dataset:
    """A dataset of in-memory tables: vocabularies from ``train``, ``test`` capped to them."""
    field_dims = vocabulary(train)
    schema = FeatureSchema(field_dims, train.numerical.shape[1], LABEL_COLUMNS)
    return Dataset(name, schema, train, clamp_to_vocabulary(test, field_dims))


def load_dataset(name: str, data_dir: str | Path = "data") -> Dataset:
    """The built-in dataset ``name``, or the processed layout in ``data_dir/name/{train,test}.csv``."""
    if name in synthetic.PRESETS:
        data = synthetic.generate(synthetic.PRESETS[name])
        return from_tables(name, data.train, data.test)
    folder = Path(data_dir) / name
    if not folder.is_dir():
        raise UserError(
            f"dataset {name!r} not found: expected {folder}/train.csv and {folder}/test.csv "
            f"in the processed layout (see the README, 'Data'); built-in datasets: {', '.join(builtin_datasets())}"
        )
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
    schema = FeatureSchema(field_dims, train.table.numerical.shape[1], LABEL_COLUMNS)
    return Dataset(name, schema, train.table, test.table)
