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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from mtreclib.errors import DataError

CHUNK_BYTES = 32 << 20


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


def _kind(kind: pa.DataType) -> tuple[type, str]:
    return (int, "an integer") if pa.types.is_integer(kind) else (float, "a number")


def locate_parse_error(path: object, piece: Piece, names: Sequence[str], types: dict[str, pa.DataType]) -> DataError | None:
    """The first line of ``piece`` that ``names``/``types`` reject, found by a slow exact scan."""
    text = io.TextIOWrapper(io.BytesIO(piece.data), encoding="utf-8", errors="replace", newline="")
    for offset, row in enumerate(csv.reader(text)):
        line = piece.first_line + offset
        if len(row) != len(names):
            return DataError(path, f"expected {len(names)} values, found {len(row)}", line=line)
        for name, value in zip(names, row):
            convert, kind = _kind(types[name])
            if value.strip() == "":
                return DataError(path, f"missing value; expected {kind}", line=line, column=name)
            try:
                convert(value)
            except ValueError:
                return DataError(path, f"expected {kind}, found {value!r}", line=line, column=name)
    return None


def parse_piece(path: object, piece: Piece, names: Sequence[str], types: dict[str, pa.DataType]) -> pa.Table:
    """``piece`` as a table of columns ``names`` typed by ``types`` (no header in the piece).

    Empty lines are not skipped, so row ``r`` of the result is line ``piece.first_line + r``.
    Raises ``DataError`` naming the line and column of the first value that does not parse, and
    of the first missing value.
    """
    try:
        table = pacsv.read_csv(
            pa.py_buffer(piece.data),
            read_options=pacsv.ReadOptions(column_names=list(names), use_threads=True, block_size=1 << 20),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            # Only an empty field is missing: "n/a" or "null" must be reported as text, not read as gaps.
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False),
        )
    except pa.ArrowInvalid as error:
        located = locate_parse_error(path, piece, names, types)
        lines = f"lines {piece.first_line}.."
        raise (located or DataError(path, f"{lines}: {error}")) from None
    for name in names:
        column = table.column(name)
        if column.null_count:
            row = int(column.is_null().to_numpy(zero_copy_only=False).argmax())
            line = piece.first_line + row
            if all(table.column(other)[row].as_py() is None for other in names):
                raise DataError(path, f"an empty line; expected {len(names)} values", line=line)
            raise DataError(path, f"missing value; expected {_kind(types[name])[1]}", line=line, column=name)
    return table
