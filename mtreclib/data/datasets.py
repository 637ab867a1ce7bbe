"""Datasets by name: the built-in synthetic ones, or a folder in the processed layout."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mtreclib.data import synthetic
from mtreclib.data.processed import LABEL_COLUMNS, read_processed_csv
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
    return tuple(int(d) + 2 for d in train.categorical.max(axis=0))


def clamp_to_vocabulary(table: MultiTaskTable, field_dims: tuple[int, ...]) -> MultiTaskTable:
    """``table`` with every id beyond its field's vocabulary mapped to the out-of-vocabulary slot."""
    limit = np.asarray(field_dims, dtype=table.categorical.dtype) - 1
    if (table.categorical <= limit).all():
        return table
    return replace(table, categorical=np.minimum(table.categorical, limit))


def _from_tables(name: str, train: MultiTaskTable, test: MultiTaskTable) -> Dataset:
    field_dims = vocabulary(train)
    schema = FeatureSchema(field_dims, train.numerical.shape[1], LABEL_COLUMNS)
    return Dataset(name, schema, train, clamp_to_vocabulary(test, field_dims))


def load_dataset(name: str, data_dir: str | Path = "data") -> Dataset:
    """The built-in dataset ``name``, or the processed layout in ``data_dir/name/{train,test}.csv``."""
    if name in synthetic.PRESETS:
        data = synthetic.generate(synthetic.PRESETS[name])
        return _from_tables(name, data.train, data.test)
    folder = Path(data_dir) / name
    if not folder.is_dir():
        raise UserError(
            f"dataset {name!r} not found: expected {folder}/train.csv and {folder}/test.csv "
            f"in the processed layout (see the README, 'Data'); built-in datasets: {', '.join(builtin_datasets())}"
        )
    train, _ = read_processed_csv(folder / "train.csv")
    test, _ = read_processed_csv(folder / "test.csv")
    return _from_tables(name, train, test)
