"""The AliExpress processed layout of the original MTReclib: reading and writing its CSV files.

A file has a header row, then ``search_id``, ``categorical_1 .. categorical_16`` (integer ids),
``numerical_1 .. numerical_63`` (floats), ``click``, ``conversion`` (0/1, conversion only on
clicked rows). ``search_id`` groups the rows of one search page and is not a feature.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtreclib.data.table import MultiTaskTable
from mtreclib.errors import DataError

CATEGORICAL_COLUMNS = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL_COLUMNS = tuple(f"numerical_{i}" for i in range(1, 64))
LABEL_COLUMNS = ("click", "conversion")
COLUMNS = ("search_id", *CATEGORICAL_COLUMNS, *NUMERICAL_COLUMNS, *LABEL_COLUMNS)

_INT32_MAX = np.iinfo(np.int32).max


def _column_types() -> dict[str, pa.DataType]:
    types = {"search_id": pa.int64()}
    types.update({name: pa.int64() for name in CATEGORICAL_COLUMNS})
    types.update({name: pa.float32() for name in NUMERICAL_COLUMNS})
    types.update({name: pa.int64() for name in LABEL_COLUMNS})
    return types


def check_header(path: Path) -> None:
    """Fail with a ``DataError`` unless ``path`` starts with the processed layout's header."""
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise DataError(path, "the file is empty; expected a header row and data rows")
    header = [name.strip() for name in header]
    if len(header) != len(COLUMNS):
        raise DataError(path, f"expected {len(COLUMNS)} columns ({COLUMNS[0]}, ..., {COLUMNS[-1]}), the header has {len(header)}", line=1)
    for position, (got, expected) in enumerate(zip(header, COLUMNS), start=1):
        if got != expected:
            raise DataError(path, f"expected column {expected!r} at position {position}, found {got!r}", line=1)


def _locate_parse_error(path: Path, types: dict[str, pa.DataType]) -> DataError | None:
    """Find the first line PyArrow refused (it names neither line nor row) with a slow exact scan."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for line, row in enumerate(reader, start=2):
            if len(row) != len(COLUMNS):
                return DataError(path, f"expected {len(COLUMNS)} values, found {len(row)}", line=line)
            for name, value in zip(COLUMNS, row):
                kind = "an integer" if pa.types.is_integer(types[name]) else "a number"
                try:
                    (int if kind == "an integer" else float)(value)
                except ValueError:
                    return DataError(path, f"expected {kind}, found {value!r}", line=line, column=name)
    return None


def _first_line(mask: np.ndarray) -> int:
    """File line of the first True row (header is line 1)."""
    return int(np.flatnonzero(mask)[0]) + 2


def read_processed_csv(path: str | os.PathLike) -> tuple[MultiTaskTable, np.ndarray]:
    """Read and check one file of the processed layout.

    Returns the table (int32 ids, float32 features, uint8 labels) and the (N,) search ids.
    Raises ``DataError`` naming the file, line and column of the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    check_header(path)
    types = _column_types()
    try:
        data = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    except pa.ArrowInvalid as error:
        located = _locate_parse_error(path, types)
        raise located or DataError(path, str(error)) from None
    if data.num_rows == 0:
        raise DataError(path, "no data rows after the header")
    for name in COLUMNS:
        column = data.column(name)
        if column.null_count:
            line = _first_line(pc.is_null(column).to_numpy(zero_copy_only=False))
            raise DataError(path, "missing value", line=line, column=name)

    def stack(names: tuple[str, ...]) -> np.ndarray:
        return np.column_stack([data.column(name).to_numpy() for name in names])

    categorical = stack(CATEGORICAL_COLUMNS)
    for j, name in enumerate(CATEGORICAL_COLUMNS):
        bad = (categorical[:, j] < 0) | (categorical[:, j] > _INT32_MAX)
        if bad.any():
            value = categorical[bad.argmax(), j]
            raise DataError(path, f"expected an id in 0..{_INT32_MAX}, found {value}", line=_first_line(bad), column=name)
    labels = stack(LABEL_COLUMNS)
    for j, name in enumerate(LABEL_COLUMNS):
        bad = (labels[:, j] != 0) & (labels[:, j] != 1)
        if bad.any():
            raise DataError(path, f"expected a label 0 or 1, found {labels[bad.argmax(), j]}", line=_first_line(bad), column=name)
    bad = labels[:, 1] > labels[:, 0]
    if bad.any():
        raise DataError(path, "conversion = 1 on a row without a click (conversion means click and convert)", line=_first_line(bad), column="conversion")
    table = MultiTaskTable(
        categorical=categorical.astype(np.int32),
        numerical=stack(NUMERICAL_COLUMNS).astype(np.float32, copy=False),
        labels=labels.astype(np.uint8),
    )
    return table, data.column("search_id").to_numpy()


def write_processed_csv(path: str | os.PathLike, table: MultiTaskTable, search_id: np.ndarray) -> None:
    """Write ``table`` in the processed layout, to a temporary name first and then renamed."""
    path = Path(path)
    columns = {"search_id": pa.array(search_id, pa.int64())}
    columns.update({name: pa.array(table.categorical[:, j]) for j, name in enumerate(CATEGORICAL_COLUMNS)})
    columns.update({name: pa.array(table.numerical[:, j]) for j, name in enumerate(NUMERICAL_COLUMNS)})
    columns.update({name: pa.array(table.labels[:, j]) for j, name in enumerate(LABEL_COLUMNS)})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        pacsv.write_csv(pa.table(columns), temporary, pacsv.WriteOptions(quoting_style="none"))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
