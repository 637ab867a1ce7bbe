"""The AliExpress processed layout of the original MTReclib: its columns, and writing its files.

A file has a header row, then ``search_id``, ``categorical_1 .. categorical_16`` (integer ids),
``numerical_1 .. numerical_63`` (floats), ``click``, ``conversion`` (0/1, conversion only on
clicked rows). ``search_id`` groups the rows of one search page and is not a feature. Reading
goes through the built-in spec (``mtreclib.data.builtin``), which checks every value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mtreclib.core.atomic import atomic_output
from mtreclib.data.table import MultiTaskTable

CATEGORICAL_COLUMNS = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL_COLUMNS = tuple(f"numerical_{i}" for i in range(1, 64))
LABEL_COLUMNS = ("click", "conversion")
COLUMNS = ("search_id", *CATEGORICAL_COLUMNS, *NUMERICAL_COLUMNS, *LABEL_COLUMNS)
# Generated data knows each label's true probability (click, click and conversion).
PROBABILITY_COLUMNS = tuple(f"{label}_probability" for label in LABEL_COLUMNS)


def _columns(table: MultiTaskTable, search_id: np.ndarray) -> dict[str, pa.Array]:
    columns = {"search_id": pa.array(search_id, pa.int64())}
    columns.update({name: pa.array(table.categorical[:, j]) for j, name in enumerate(CATEGORICAL_COLUMNS)})
    columns.update({name: pa.array(table.numerical[:, j]) for j, name in enumerate(NUMERICAL_COLUMNS)})
    columns.update({name: pa.array(table.labels[:, j]) for j, name in enumerate(LABEL_COLUMNS)})
    return columns


def write_processed_csv(path: str | os.PathLike, table: MultiTaskTable, search_id: np.ndarray) -> None:
    """Write ``table`` in the processed layout, to a temporary name first and then renamed."""
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        # The header unquoted, as the original's pandas writes it.
        handle.write((",".join(COLUMNS) + "\n").encode())
        pacsv.write_csv(pa.table(_columns(table, search_id)), handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def write_processed_parquet(path: str | os.PathLike, table: MultiTaskTable, search_id: np.ndarray) -> None:
    """Write ``table`` in the processed layout as Parquet (every value exactly: ids, float32 features,
    and the labels' true probabilities when the table knows them), through a temporary name."""
    columns = _columns(table, search_id)
    if table.probabilities is not None:
        columns.update({name: pa.array(table.probabilities[:, j]) for j, name in enumerate(PROBABILITY_COLUMNS)})
    with atomic_output(Path(path)) as temporary:
        pq.write_table(pa.table(columns), temporary)
