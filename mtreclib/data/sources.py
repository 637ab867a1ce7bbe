"""A spec's files as chunks of rows: Parquet row groups or CSV pieces, each with its place in its file.

Parquet files are read batch by batch (only the columns the spec names); CSV files in pieces of
``CHUNK_BYTES`` cut on line breaks and parsed by PyArrow on all cores (``csvchunks``), plain or
gzipped. Every chunk carries a ``Place`` so that a bad value is reported at its file, line
(CSV, header counted) or row (Parquet), and column. Before any long work, ``check_columns``
opens every file once and refuses a missing column.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import CHUNK_BYTES, Dialect, line_pieces, parse_piece, prefetch
from mtreclib.data.encoding import Place
from mtreclib.data.spec import DatasetSpec

PARQUET_BATCH_ROWS = 256 * 1024
PARQUET_BATCH_BYTES = 64 << 20  # rows of long lists (a side table's histories) come in fewer per batch


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of one file: the spec's columns, and where the first row is."""

    table: pa.Table
    place: Place

    def __len__(self) -> int:
        return self.table.num_rows


def csv_types(spec: DatasetSpec) -> dict[str, pa.DataType]:
    """How each column a spec reads is parsed from CSV text."""
    types: dict[str, pa.DataType] = {}
    for c in spec.categorical:
        types[c.column] = pa.int64() if c.kind == "identity" else pa.string()
    for c in spec.multi_valued:
        types[c.column] = pa.string()
        if c.weights:
            types[c.weights] = pa.string()
    for n in spec.numerical:
        types[n.column] = pa.float64()
    for label in spec.labels:
        types[label.column] = pa.string() if label.positive else pa.float64()
        if label.probability:
            types[label.probability] = pa.float64()
    if spec.group:
        types[spec.group] = pa.string()
    if spec.sample_weight:
        types[spec.sample_weight] = pa.float64()
    if spec.split is not None and spec.split.column:
        types[spec.split.column] = pa.float64()
    for table, _ in spec.tables.values():
        types[table.row_key] = pa.string()
        types[table.key] = pa.string()
    return types


def _open_text(path: Path) -> contextlib.AbstractContextManager[BinaryIO]:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def csv_header(spec: DatasetSpec, path: Path) -> list[str]:
    """The column names of a CSV file: its first line, or the spec's ``csv.columns``."""
    if not spec.csv.header:
        return list(spec.csv.columns)
    try:
        with _open_text(path) as handle:
            first = handle.readline().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(path, f"cannot read the file ({error})") from None
    if not first.strip():
        raise DataError(path, "the file is empty; expected a header line naming the columns", line=1)
    return [name.strip() for name in next(csv.reader(io.StringIO(first), delimiter=spec.csv.delimiter))]


def file_columns(spec: DatasetSpec, path: Path) -> list[str]:
    if spec.format == "csv":
        return csv_header(spec, path)
    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(path, f"not a readable Parquet file ({str(error).splitlines()[0]})") from None


def check_columns(spec: DatasetSpec) -> None:
    """Every file has every column the spec reads (checked before any data is read)."""
    checks = [(path, spec.columns_needed()) for path in spec.files()]
    for name, (_, files) in spec.tables.items():
        checks += [(path, spec.table_columns(name)) for paths in files.values() for path in paths]
    for path, needed in checks:
        present = file_columns(spec, path)
        missing = [name for name in needed if name not in present]
        if missing:
            shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
            header = {"line": 1} if spec.format == "csv" and spec.csv.header else {}
            raise DataError(path, f"no column {missing[0]!r} (named in {spec.where}); the file has: {shown}", **header)


def read_chunks(
    spec: DatasetSpec,
    files: tuple[Path, ...],
    *,
    chunk_bytes: int = CHUNK_BYTES,
    columns: tuple[str, ...] | None = None,
    labels: bool = True,
    passthrough: tuple[str, ...] = (),
    parquet_rows: int | None = None,
) -> Iterator[Chunk]:
    """The rows of ``files`` in order, in chunks holding the spec's columns.

    ``columns``: these columns instead (a side table's); ``labels=False``: the feature columns
    only (``DatasetSpec.columns_needed``). ``passthrough``: more columns carried as they are (ids
    copied to predictions): Parquet's as stored, CSV's as text, missing values allowed.
    ``parquet_rows``: rows per Parquet chunk (default: about ``PARQUET_BATCH_BYTES`` of the
    columns read, ``batch_rows``); CSV chunks are ``chunk_bytes`` of text.
    """
    wanted = columns if columns is not None else spec.columns_needed(labels=labels)
    needed = list(dict.fromkeys([*wanted, *passthrough]))
    for path in files:
        if spec.format == "parquet":
            yield from _parquet_chunks(path, needed, parquet_rows)
        else:
            yield from _csv_chunks(spec, path, needed, chunk_bytes)


def batch_rows(reader: pq.ParquetFile, columns: list[str]) -> int:
    """Rows per batch so that a batch of ``columns`` holds about ``PARQUET_BATCH_BYTES`` uncompressed."""
    metadata = reader.metadata
    if metadata.num_rows == 0:
        return PARQUET_BATCH_ROWS
    wanted = set(columns)
    size = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            if column.path_in_schema.split(".")[0] in wanted:
                size += column.total_uncompressed_size
    per_row = max(size / metadata.num_rows, 1.0)
    return int(min(PARQUET_BATCH_ROWS, max(1024, PARQUET_BATCH_BYTES // per_row)))


def _parquet_chunks(path: Path, needed: list[str], rows: int | None) -> Iterator[Chunk]:
    try:
        # pre_buffer (PyArrow's default) keeps every row group's column chunks read so far until
        # the file is closed: memory then grows with the file instead of staying at a few batches.
        reader = pq.ParquetFile(path, pre_buffer=False)
        row = 1
        for batch in reader.iter_batches(batch_size=rows or batch_rows(reader, needed), columns=needed):
            yield Chunk(pa.Table.from_batches([batch]), Place(path, row, lines=False))
            row += batch.num_rows
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(path, f"cannot read the Parquet file ({str(error).splitlines()[0]})") from None


def _csv_chunks(spec: DatasetSpec, path: Path, needed: list[str], chunk_bytes: int) -> Iterator[Chunk]:
    names = csv_header(spec, path)
    types = {name: pa.string() for name in needed} | csv_types(spec)  # a column the spec does not type is text
    # Ids and labels must be present; the encoders decide about the rest (fill, out-of-vocabulary).
    strict = {c.column for c in spec.categorical if c.kind == "identity"} | {label.column for label in spec.labels}
    strict |= {table.row_key for table, _ in spec.tables.values()} | {table.key for table, _ in spec.tables.values()}
    nullable = [name for name in needed if name not in strict]
    dialect = Dialect(spec.csv.delimiter)
    with _open_text(path) as handle:
        first_line = 1
        if spec.csv.header:
            handle.readline()
            first_line = 2
        try:
            with contextlib.closing(prefetch(line_pieces(handle, first_line=first_line, chunk_bytes=chunk_bytes))) as pieces:
                for piece in pieces:
                    table = parse_piece(path, piece, names, types, dialect=dialect, nullable=nullable, include=needed)
                    yield Chunk(table, Place(path, piece.first_line, lines=True))
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise DataError(path, f"cannot read the file ({error}); is it complete?") from None
