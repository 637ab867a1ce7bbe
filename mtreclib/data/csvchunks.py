"""Large CSV files in bounded memory: pieces that end on a line break, each parsed by PyArrow.

PyArrow's multi-threaded reader is fast, but it wants the whole file (``read_csv``) or parses
serially (``open_csv``), and neither names the line of a bad value. Cutting the stream into
pieces of a few tens of megabytes and giving each piece to ``read_csv`` keeps memory flat in the
file's size, keeps every core busy, and lets a failure be located by an exact scan of that one
piece. Streams may be plain files or members of (nested) zip files.
"""

from __future__ import annotations

import csv
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtreclib.core.errors import DataError

CHUNK_BYTES = 32 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class Piece:
    """Whole lines of a file.

    Attributes:
        data: the bytes, ending with a line break (except possibly the file's last piece).
        first_line: the 1-based file line of the piece's first row.
    """

    data: memoryview
    first_line: int


def line_pieces(stream: BinaryIO, first_line: int = 1, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Piece]:
    """Consecutive pieces of ``stream`` of about ``chunk_bytes`` each, cut after a ``\\n``."""
    line = first_line
    rest = b""
    while True:
        data = stream.read(chunk_bytes)
        if not data:
            break
        if rest:
            data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a chunk: read on
            rest = data
            continue
        view = memoryview(data)
        yield Piece(view[:cut], line)
        line += data.count(b"\n", 0, cut)
        rest = data[cut:]
    if rest:
        yield Piece(memoryview(rest), line)


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced ahead by a background thread, at most ``depth`` waiting.

    Reading and decompressing the next piece (zlib and file reads release the GIL) then overlaps
    with parsing the current one. Errors of the producer are raised in the consumer. Close the
    returned generator (``contextlib.closing``) before closing what the producer reads from.
    """
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                waiting.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None, False)):
                    return
            put((None, None, True))
        except BaseException as error:  # handed to the consumer, which re-raises it
            put((None, error, True))

    thread = threading.Thread(target=produce, name="mtrec-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error, done = waiting.get()
            if error is not None:
                raise error
            if done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _kind(kind: pa.DataType) -> tuple[type, str]:
    if pa.types.is_integer(kind):
        return int, "an integer"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return str, "a value"
    return float, "a number"


@dataclass(frozen=True)
class Dialect:
    """How a CSV file separates values.

    Attributes:
        delimiter: between values (one character).
        quoted: values may be enclosed in double quotes; False reads quotes as text (files
            whose values contain ``"`` unescaped).
    """

    delimiter: str = ","
    quoted: bool = True


COMMA = Dialect()


def locate_parse_error(
    path: object, piece: Piece, names: Sequence[str], types: dict[str, pa.DataType], dialect: Dialect = COMMA, nullable: Sequence[str] = ()
) -> DataError | None:
    """The first line of ``piece`` that ``names``/``types`` reject, found by a slow exact scan."""
    text = io.TextIOWrapper(io.BytesIO(piece.data), encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(text, delimiter=dialect.delimiter, quoting=csv.QUOTE_MINIMAL if dialect.quoted else csv.QUOTE_NONE)
    for offset, row in enumerate(reader):
        line = piece.first_line + offset
        if len(row) != len(names):
            return DataError(path, f"expected {len(names)} values, found {len(row)}", line=line)
        for name, value in zip(names, row):
            if name not in types:
                continue  # a column the caller does not read
            convert, kind = _kind(types[name])
            if value.strip() == "":
                if name in nullable:
                    continue
                return DataError(path, f"missing value; expected {kind}", line=line, column=name)
            try:
                convert(value)
            except ValueError:
                return DataError(path, f"expected {kind}, found {value!r}", line=line, column=name)
    return None


def _line_text(piece: Piece, row: int) -> bytes:
    """Row ``row`` of ``piece`` as text (error path only)."""
    return bytes(piece.data).split(b"\n")[row].rstrip(b"\r")


def parse_piece(
    path: object,
    piece: Piece,
    names: Sequence[str],
    types: dict[str, pa.DataType],
    *,
    text_numbers: Sequence[str] = (),
    dialect: Dialect = COMMA,
    nullable: Sequence[str] = (),
    include: Sequence[str] | None = None,
) -> pa.Table:
    """``piece`` as a table of columns ``names`` typed by ``types`` (no header in the piece).

    ``include``: read only these columns (the others are not converted, so nothing is assumed
    of them but their count); by default all of ``names``.

    Columns in ``text_numbers`` are checked to be finite numbers but kept as their text, so that
    they can be written out again unchanged and without the cost of formatting floats.
    Empty lines are not skipped, so row ``r`` of the result is line ``piece.first_line + r``.
    Raises ``DataError`` naming the line and column of the first value that does not parse, and
    of the first missing value outside the ``nullable`` columns (whose empty values are nulls).
    """
    read_types = {**types, **{name: pa.string() for name in text_numbers}}
    strings_can_be_null = any(_kind(types[name])[0] is str for name in nullable)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(piece.data),
            read_options=pacsv.ReadOptions(column_names=list(names), use_threads=True, block_size=1 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=dialect.delimiter, quote_char='"' if dialect.quoted else False, ignore_empty_lines=False
            ),
            # Only an empty field is missing: "n/a" or "null" must be reported as text, not read as gaps.
            convert_options=pacsv.ConvertOptions(
                column_types=read_types,
                null_values=[""],
                strings_can_be_null=strings_can_be_null,
                include_columns=list(include) if include is not None else None,
            ),
        )
    except pa.ArrowInvalid as error:
        raise _located(path, piece, names, types, error, dialect, nullable) from None
    for name in include if include is not None else names:
        if name in nullable:
            continue
        column = table.column(name)
        if column.null_count:
            row = int(column.is_null().to_numpy(zero_copy_only=False).argmax())
            line = piece.first_line + row
            if not _line_text(piece, row).strip():
                raise DataError(path, f"an empty line; expected {len(names)} values", line=line)
            raise DataError(path, f"missing value; expected {_kind(types[name])[1]}", line=line, column=name)
    for name in text_numbers:
        try:
            values = pc.cast(table.column(name), pa.float64()).to_numpy()
        except pa.ArrowInvalid as error:
            raise _located(path, piece, names, types, error, dialect, nullable) from None
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(bad.argmax())
            raise DataError(path, f"expected a finite number, found {values[row]}", line=piece.first_line + row, column=name)
    return table


def _located(
    path: object,
    piece: Piece,
    names: Sequence[str],
    types: dict[str, pa.DataType],
    error: Exception,
    dialect: Dialect = COMMA,
    nullable: Sequence[str] = (),
) -> DataError:
    located = locate_parse_error(path, piece, names, types, dialect, nullable)
    return located or DataError(path, f"lines {piece.first_line}..: {error}")
