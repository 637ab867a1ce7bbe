"""A raw file's rows in bounded memory: pieces of whole lines, read ahead on a thread, parsed by PyArrow.

Every recipe reads its files the same way: the header checked (if the file has one), the text
cut into pieces of ``chunk_bytes`` (read and decompressed on a background thread while the last
piece is converted), each piece parsed into a typed table that names the line and column of a
bad value, a progress bar over the bytes, and a file without rows refused. The recipe converts
each table as it comes, so memory holds a few pieces, not the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import pyarrow as pa
from tqdm.auto import tqdm

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import CHUNK_BYTES, COMMA, Dialect, Piece, line_pieces, parse_piece, prefetch
from mtreclib.recipes.kit.files import OpenFile, read_header
from mtreclib.recipes.kit.report import Report


def read_pieces(
    file: OpenFile,
    columns: Sequence[str],
    types: dict[str, pa.DataType],
    *,
    report: Report | None = None,
    header: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool = True,
    dialect: Dialect = COMMA,
    nullable: Sequence[str] = (),
    text_numbers: Sequence[str] = (),
) -> Iterator[tuple[Piece, pa.Table]]:
    """Each piece of ``file`` and its rows, typed by ``types`` (``csvchunks.parse_piece``).

    Row ``r`` of a piece's table is line ``piece.first_line + r``. ``header``: the first line
    must name ``columns``. The rows and bytes read are added to ``report``. Raises ``DataError``
    for a bad value, or after the last piece if there was no row.
    """
    if header:
        read_header(file, columns)
    rows = 0
    with contextlib.ExitStack() as stack:
        pieces = stack.enter_context(contextlib.closing(prefetch(line_pieces(file.stream, first_line=2 if header else 1, chunk_bytes=chunk_bytes))))
        bar = stack.enter_context(
            tqdm(total=file.size, unit="B", unit_scale=True, desc=file.file_name, disable=None if progress else True, leave=False)
        )
        for piece in pieces:
            table = parse_piece(file.name, piece, columns, types, dialect=dialect, nullable=nullable, text_numbers=text_numbers)
            rows += table.num_rows
            bar.update(piece.data.nbytes)
            if report is not None:
                report.read_rows += table.num_rows
                report.read_bytes += piece.data.nbytes
            yield piece, table
            del table  # not held while the next piece is parsed
    if rows == 0:
        empty = "the file has a header but no rows" if header else "the file is empty"
        raise DataError(file.name, f"{empty}; expected rows of {len(columns)} values")
