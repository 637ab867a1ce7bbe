"""The AliExpress processed layout of the original MTReclib: reading and writing its CSV files.

A file has a header row, then ``search_id``, ``categorical_1 .. categorical_16`` (integer ids),
``numerical_1 .. numerical_63`` (floats), ``click``, ``conversion`` (0/1, conversion only on
clicked rows). ``search_id`` groups the rows of one search page and is not a feature.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mtreclib.atomic import atomic_output
from mtreclib.data.csvchunks import CHUNK_BYTES, line_pieces, parse_piece, prefetch
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
    # Parsed straight to float32, the training dtype: no float64 copy of the features ever exists.
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


@dataclass(frozen=True)
class ProcessedChunk:
    """Consecutive checked rows of a processed file.

    Attributes:
        first_line: file line of the first row (the header is line 1).
        text_bytes: size of the rows in the file.
        search_id: (n,) int64.
        categorical: (n, 16) int32 ids, each in ``0 .. 2**31 - 1``.
        numerical: (n, 63) float32, finite.
        labels: (n, 2) uint8 click, conversion in {0, 1}, conversion only where click.
    """

    first_line: int
    text_bytes: int
    search_id: np.ndarray
    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray


def _stack(data: pa.Table, names: tuple[str, ...], dtype: type) -> np.ndarray:
    """(n, len(names)) row-major array of ``names``: rows are what batches gather.

    Arrow's own row-major conversion is several times faster than filling NumPy column by column.
    """
    batches = data.select(list(names)).combine_chunks().to_batches()
    if not batches:
        return np.empty((0, len(names)), dtype=dtype)
    return np.asarray(batches[0].to_tensor(row_major=True)).astype(dtype, copy=False)


def _first_bad(mask: np.ndarray) -> int:
    return int(mask.argmax())


def _check_chunk(path: Path, data: pa.Table, first_line: int, text_bytes: int) -> ProcessedChunk:
    categorical = _stack(data, CATEGORICAL_COLUMNS, np.int64)
    bad = (categorical < 0) | (categorical > _INT32_MAX)
    if bad.any():
        row, j = np.unravel_index(bad.argmax(), bad.shape)
        raise DataError(path, f"expected an id in 0..{_INT32_MAX}, found {categorical[row, j]}", line=first_line + int(row), column=CATEGORICAL_COLUMNS[j])
    numerical = _stack(data, NUMERICAL_COLUMNS, np.float32)
    bad = ~np.isfinite(numerical)
    if bad.any():
        row, j = np.unravel_index(bad.argmax(), bad.shape)
        raise DataError(path, f"expected a finite number, found {numerical[row, j]}", line=first_line + int(row), column=NUMERICAL_COLUMNS[j])
    labels = _stack(data, LABEL_COLUMNS, np.int64)
    for j, name in enumerate(LABEL_COLUMNS):
        bad = (labels[:, j] != 0) & (labels[:, j] != 1)
        if bad.any():
            row = _first_bad(bad)
            raise DataError(path, f"expected a label 0 or 1, found {labels[row, j]}", line=first_line + row, column=name)
    bad = labels[:, 1] > labels[:, 0]
    if bad.any():
        raise DataError(
            path, "conversion = 1 on a row without a click (conversion means click and convert)", line=first_line + _first_bad(bad), column="conversion"
        )
    return ProcessedChunk(
        first_line=first_line,
        text_bytes=text_bytes,
        search_id=data.column("search_id").to_numpy(),
        categorical=categorical.astype(np.int32),
        numerical=numerical,
        labels=labels.astype(np.uint8),
    )


def read_processed_chunks(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> Iterator[ProcessedChunk]:
    """The rows of one processed file, checked, in pieces of about ``chunk_bytes`` of text.

    Memory stays flat in the file's size. Raises ``DataError`` naming the file, line and column of
    the first problem: a wrong header, a wrong number of values, a value that is not a number, a
    missing value, an id outside ``0 .. 2**31 - 1``, a label outside {0, 1}, a conversion without a
    click, no data rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    check_header(path)
    types = _column_types()
    rows = 0
    with open(path, "rb") as handle:
        handle.readline()
        with contextlib.closing(prefetch(line_pieces(handle, first_line=2, chunk_bytes=chunk_bytes))) as pieces:
            for piece in pieces:
                chunk = _check_chunk(path, parse_piece(path, piece, COLUMNS, types), piece.first_line, piece.data.nbytes)
                rows += len(chunk.labels)
                yield chunk
    if rows == 0:
        raise DataError(path, "no data rows after the header")


def read_processed_csv(path: str | os.PathLike) -> tuple[MultiTaskTable, np.ndarray]:
    """Read and check one whole file of the processed layout into memory (small files, tests).

    Returns the table (int32 ids, float32 features, uint8 labels) and the (N,) search ids. Large
    files go through the memory-mapped cache instead (``mtreclib.data.cache``).
    """
    chunks = list(read_processed_chunks(path))
    table = MultiTaskTable(
        categorical=np.concatenate([c.categorical for c in chunks]),
        numerical=np.concatenate([c.numerical for c in chunks]),
        labels=np.concatenate([c.labels for c in chunks]),
    )
    return table, np.concatenate([c.search_id for c in chunks])


def write_processed_csv(path: str | os.PathLike, table: MultiTaskTable, search_id: np.ndarray) -> None:
    """Write ``table`` in the processed layout, to a temporary name first and then renamed."""
    path = Path(path)
    columns = {"search_id": pa.array(search_id, pa.int64())}
    columns.update({name: pa.array(table.categorical[:, j]) for j, name in enumerate(CATEGORICAL_COLUMNS)})
    columns.update({name: pa.array(table.numerical[:, j]) for j, name in enumerate(NUMERICAL_COLUMNS)})
    columns.update({name: pa.array(table.labels[:, j]) for j, name in enumerate(LABEL_COLUMNS)})
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        # The header unquoted, as the original's pandas writes it.
        handle.write((",".join(COLUMNS) + "\n").encode())
        pacsv.write_csv(pa.table(columns), handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))
