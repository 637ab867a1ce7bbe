"""Checks of raw values that the CSV parser cannot make, each stopping at the first bad row with one line.

Every check is vectorised over a piece of rows; only the first failing row is then looked at, to
name its line and column and what was found there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.errors import DataError


def first(mask: np.ndarray) -> int:
    """The index of the first true entry of ``mask`` (which has one)."""
    return int(np.flatnonzero(mask)[0])


def expect(bad: np.ndarray, values: Sequence | np.ndarray | pa.Array, name: str, first_line: int, column: str, expected: str) -> None:
    """Raise ``DataError(name, "expected EXPECTED, found VALUE", line, column)`` at the first ``bad`` row, if any.

    ``first_line`` is the line of row 0; ``values[row]`` is shown as it is (text in quotes).
    """
    if bad.any():
        row = first(bad)
        value = values[row]
        if isinstance(value, pa.Scalar):
            value = value.as_py()
        shown = repr(value) if isinstance(value, str) else value
        raise DataError(name, f"expected {expected}, found {shown}", line=first_line + row, column=column)


def binary(values: np.ndarray, name: str, first_line: int, column: str, expected: str = "0 or 1") -> None:
    """A label column holds only 0 and 1."""
    expect((values != 0) & (values != 1), values, name, first_line, column, expected)


def sort_distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Keys sorted for a binary search, and whether one repeats.

    Returns ``order`` (n,), the row of each sorted key (a stable sort); the sorted keys (n,); and
    None if every key is distinct, else the two rows (0-based, in file order) of the first
    occurrences of the smallest key that repeats, for the message naming both.
    """
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(same):
        return order, ordered, None
    return order, ordered, (int(order[same[0]]), int(order[same[0] + 1]))


def distinct_lines(
    keys: np.ndarray, name: str, column: str, key_text: Callable[[object], str], row: str, rule: str, first_line: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``sort_distinct`` of a file's keys (row ``r`` on line ``first_line + r``); a repeated key is
    ``DataError(name, "KEY has a second ROW (the first is line N); RULE")`` on its second line."""
    order, ordered, repeat = sort_distinct(keys)
    if repeat is not None:
        first_row, second_row = repeat
        message = f"{key_text(keys[first_row])} has a second {row} (the first is line {first_line + first_row}); {rule}"
        raise DataError(name, message, line=first_line + second_row, column=column)
    return order, ordered


def first_rejected(texts: pa.Array, kind: pa.DataType) -> int:
    """The first of ``texts`` that Arrow's cast to ``kind`` rejects (by halving: a few casts of zero-copy slices)."""
    low, high = 0, len(texts)  # the first rejected one is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            pc.cast(texts.slice(low, middle - low), kind)
            low = middle
        except pa.ArrowInvalid:
            high = middle
    return low


def integers(texts: pa.Array | pa.ChunkedArray, name: str, first_line: int, column: str, missing: Sequence[str] = ()) -> pa.Array:
    """Text values as int64, the ``missing`` markers (and empty values) as nulls; anything else is an error."""
    array = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if missing:
        array = pc.if_else(pc.is_in(array, value_set=pa.array(list(missing), pa.string())), pa.scalar(None, pa.string()), array)
    array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
    try:
        return pc.cast(array, pa.int64())
    except pa.ArrowInvalid:
        row = first_rejected(array, pa.int64())
        markers = "".join(f" or {marker}" for marker in missing)
        raise DataError(name, f"expected an integer{markers}, found {array[row].as_py()!r}", line=first_line + row, column=column) from None
