"""CSV in pieces: cutting at line breaks with the right line numbers, and the prefetch thread."""

from __future__ import annotations

import contextlib
import io
import threading

import pyarrow as pa
import pytest

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import line_pieces, parse_piece, prefetch

TEXT = b"".join(f"{i},{'x' * (i % 37)}\n".encode() for i in range(1, 400)) + b"400,last line without a break"


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1000, 1 << 20])
def test_pieces_are_whole_lines_that_add_up_to_the_stream(chunk_bytes):
    pieces = list(line_pieces(io.BytesIO(TEXT), first_line=5, chunk_bytes=chunk_bytes))
    assert b"".join(bytes(p.data) for p in pieces) == TEXT
    for piece in pieces:
        first = bytes(piece.data).split(b"\n")[0]
        assert int(first.split(b",")[0]) == piece.first_line - 4  # line 5 holds row 1
        assert bytes(piece.data).endswith(b"\n") or piece is pieces[-1]


def test_errors_in_a_later_piece_name_the_file_line():
    names = ("a", "b")
    types = {"a": pa.int64(), "b": pa.float64()}
    text = b"".join(f"{i},0.5\n".encode() for i in range(1, 300)).replace(b"\n217,0.5\n", b"\n217,oops\n")
    with pytest.raises(DataError, match=r"data.csv, line 217, column b: expected a number, found 'oops'"):
        for piece in line_pieces(io.BytesIO(text), chunk_bytes=100):
            parse_piece("data.csv", piece, names, types)


def test_prefetch_yields_everything_in_order_and_re_raises_the_producers_error():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise DataError("f.csv", "broken", line=3)

    got = []
    with pytest.raises(DataError, match="f.csv, line 3: broken"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1, 2]


def test_closing_prefetch_early_stops_its_thread():
    before = threading.active_count()
    with contextlib.closing(prefetch(iter(range(10**9)), depth=2)) as items:
        assert next(items) == 0
    assert threading.active_count() == before
