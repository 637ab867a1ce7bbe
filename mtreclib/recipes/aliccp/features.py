"""Ali-CCP's fields, and its feature lists parsed into per-field ids and values, with exact error places.

A feature list is features joined by ``\\x01``; a feature is ``field\\x02feature_id\\x03value``
(the dataset page's description, and what every public reproduction splits on). ``field`` is one
of the 23 field ids of the ESMM paper (Ma et al., SIGIR 2018, table of features), the feature id
a global integer, the value a real number: ``1.0`` for one-hot fields, a log count for behaviour
and combination fields. User fields live in the common features, the others in the skeleton.

Parsing is vectorised over a piece of lines (PyArrow splits the strings, NumPy groups them by
field), so a bad feature is found by a vectorised test and then described by one slow look at
the line it is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.errors import DataError
from mtreclib.recipes.kit.checks import first_rejected

COMMON = "common"  # the common-features file (user side)
SAMPLE = "sample"  # the skeleton file (item and context side)


@dataclass(frozen=True)
class Field:
    """One field of the ESMM paper's feature table.

    Attributes:
        name: the field id, as in the raw files; also the output column's name.
        side: ``COMMON`` (in the common features) or ``SAMPLE`` (in the skeleton).
        multi: several features per line (a list column with weights) or at most one.
        role: ``user``, ``item`` or ``context`` in the dataset spec.
        meaning: what the paper says it is.
    """

    name: str
    side: str
    multi: bool
    role: str
    meaning: str


# In the order of the paper's table and of x-deeplearning's ESMM script (user fields, then ad fields).
FIELDS = (
    Field("101", COMMON, False, "user", "user id"),
    Field("109_14", COMMON, True, "user", "categories the user acted on, with log counts"),
    Field("110_14", COMMON, True, "user", "shops the user acted on, with log counts"),
    Field("127_14", COMMON, True, "user", "brands the user acted on, with log counts"),
    Field("150_14", COMMON, True, "user", "intention nodes the user acted on, with log counts"),
    Field("121", COMMON, False, "user", "user profile id"),
    Field("122", COMMON, False, "user", "user profile group id"),
    Field("124", COMMON, False, "user", "gender"),
    Field("125", COMMON, False, "user", "age"),
    Field("126", COMMON, False, "user", "consumption level I"),
    Field("127", COMMON, False, "user", "consumption level II"),
    Field("128", COMMON, False, "user", "occupation (works or not)"),
    Field("129", COMMON, False, "user", "geography"),
    Field("205", SAMPLE, False, "item", "item id"),
    Field("206", SAMPLE, False, "item", "item category"),
    Field("207", SAMPLE, False, "item", "item shop"),
    Field("210", SAMPLE, True, "item", "item intention nodes"),
    Field("216", SAMPLE, False, "item", "item brand"),
    Field("508", SAMPLE, True, "context", "user's count on the item's category (109_14 x 206)"),
    Field("509", SAMPLE, True, "context", "user's count on the item's shop (110_14 x 207)"),
    Field("702", SAMPLE, True, "context", "user's count on the item's brand (127_14 x 216)"),
    Field("853", SAMPLE, True, "context", "user's count on the item's intentions (150_14 x 210)"),
    Field("301", SAMPLE, False, "context", "position"),
)
FIELD_NAMES = tuple(field.name for field in FIELDS)
_SIDE_NAME = {COMMON: "the common features (user side)", SAMPLE: "the sample skeleton (item and context side)"}


def weight_column(field: Field) -> str:
    """The list column holding the values of a multi-valued field's features."""
    return f"{field.name}_weight"


@dataclass(frozen=True)
class FieldValues:
    """The features of one field on the lines of a piece, in line order and in order of appearance.

    Attributes:
        counts: (n,) features of the field on each line (0 where absent).
        ids: (counts.sum(),) int64 feature ids.
        weights: (counts.sum(),) float32 values.
    """

    counts: np.ndarray
    ids: np.ndarray
    weights: np.ndarray


def _shown(text: str) -> str:
    """A feature as it is, separators visible (``'205\\x02123\\x031.0'``), at most 80 characters."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


class _Locator:
    """Names the line and feature of a flat feature index (error path only)."""

    def __init__(self, path: object, first_line: int, row: np.ndarray, position: np.ndarray, entries: pa.Array):
        self.path, self.first_line, self.row, self.position, self.entries = path, first_line, row, position, entries

    def error(self, index: int, message: str) -> DataError:
        feature = self.entries[int(index)].as_py()
        return DataError(
            self.path,
            f"feature {int(self.position[index]) + 1} of the list, {_shown(feature)}: {message}",
            line=self.first_line + int(self.row[index]),
            column="feature_list",
        )


def _as_numbers(texts: pa.Array, kind: pa.DataType, locator: _Locator, what: str) -> np.ndarray:
    try:
        return pc.cast(texts, kind).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        index = first_rejected(texts, kind)
        raise locator.error(index, f"expected {what}, found {texts[index].as_py()!r}") from None


def _split_pairs(texts: pa.Array, separator: str, locator: _Locator, expected: str) -> tuple[pa.Array, pa.Array]:
    """``texts`` each cut at ``separator`` into exactly two parts."""
    parts = pc.split_pattern(texts, separator)
    bad = pc.not_equal(pc.list_value_length(parts), 2).to_numpy(zero_copy_only=False)
    if bad.any():
        raise locator.error(int(bad.argmax()), f"expected {expected}")
    return pc.list_element(parts, 0), pc.list_element(parts, 1)


def parse_features(path: object, first_line: int, lists: pa.Array, declared: np.ndarray, side: str) -> dict[str, FieldValues]:
    """The features of ``lists`` (the feature-list column of a piece), by field of ``side``.

    Args:
        path: the file, for messages.
        first_line: the file line of ``lists[0]``.
        lists: (n,) strings (nulls are empty lists).
        declared: (n,) the lines' feature counts, checked against the lists.
        side: ``COMMON`` or ``SAMPLE``: the fields this file may hold.

    Returns every field of ``side``, present or not on these lines. Raises ``DataError`` for a
    count that does not match, a feature not shaped ``field\\x02id\\x03value``, an unknown field
    or one of the other side, an id that is not a non-negative 64-bit integer, a value that is not
    a finite number, and a single-valued field given twice or with a value other than 1.
    """
    n = len(lists)
    text = pc.fill_null(lists, "")
    split = pc.split_pattern(text, "\x01")
    lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    empty = pc.equal(text, "").to_numpy(zero_copy_only=False)
    found = np.where(empty, 0, lengths)
    wrong = found != declared
    if wrong.any():
        row = int(wrong.argmax())
        raise DataError(
            path, f"the line says {declared[row]} features, its list holds {found[row]}", line=first_line + row, column="feature_count"
        )
    entries = pc.list_flatten(split)
    row = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(row)) - starts[row]
    if empty.any():  # an empty list splits into one empty string, which is no feature
        keep = ~empty[row]
        entries, row, position = entries.filter(pa.array(keep)), row[keep], position[keep]
    locator = _Locator(path, first_line, row, position, entries)
    field_text, rest = _split_pairs(entries, "\x02", locator, "field\\x02id\\x03value")
    id_text, value_text = _split_pairs(rest, "\x03", locator, "field\\x02id\\x03value")

    code = pc.index_in(field_text, value_set=pa.array(FIELD_NAMES)).to_numpy(zero_copy_only=False)
    unknown = np.isnan(code) if code.dtype.kind == "f" else np.zeros(len(code), dtype=bool)
    if unknown.any():
        raise locator.error(int(unknown.argmax()), f"unknown field; Ali-CCP's fields are {', '.join(FIELD_NAMES)}")
    code = code.astype(np.int8)
    sides = np.array([field.side == side for field in FIELDS])
    elsewhere = ~sides[code]
    if elsewhere.any():
        index = int(elsewhere.argmax())
        field = FIELDS[code[index]]
        raise locator.error(index, f"field {field.name} ({field.meaning}) belongs in {_SIDE_NAME[field.side]}, not in {_SIDE_NAME[side]}")

    ids = _as_numbers(id_text, pa.int64(), locator, "an integer feature id")
    negative = ids < 0
    if negative.any():
        raise locator.error(int(negative.argmax()), "expected a feature id of 0 or more")
    values = _as_numbers(value_text, pa.float64(), locator, "a number")
    infinite = ~np.isfinite(values)
    if infinite.any():
        raise locator.error(int(infinite.argmax()), "expected a finite value")

    # A stable sort by field keeps each field's features in line order, and within a line in
    # order of appearance: every value of a multi-valued field is kept, where it was.
    order = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[order], np.arange(len(FIELDS) + 1))
    out = {}
    for index, field in enumerate(FIELDS):
        if field.side != side:
            continue
        taken = order[bounds[index] : bounds[index + 1]]
        counts = np.bincount(row[taken], minlength=n)
        if not field.multi:
            _check_single(locator, field, taken, counts, row, values)
        out[field.name] = FieldValues(counts, ids[taken], values[taken].astype(np.float32))
    return out


def _check_single(locator: _Locator, field: Field, taken: np.ndarray, counts: np.ndarray, row: np.ndarray, values: np.ndarray) -> None:
    """A single-valued field: at most one feature a line, of value 1 (it carries no weight)."""
    twice = counts[row[taken]] > 1
    if twice.any():
        first = int(taken[twice.argmax()])
        again = int(taken[np.flatnonzero(row[taken] == row[first])[1]])
        raise locator.error(again, f"field {field.name} ({field.meaning}) has one feature a line; this line has {counts[row[first]]}")
    weighted = values[taken] != 1.0
    if weighted.any():
        raise locator.error(int(taken[weighted.argmax()]), f"field {field.name} ({field.meaning}) is one-hot; expected the value 1")


_HEX = np.full(256, 255, dtype=np.uint8)
for _digit, _char in enumerate(b"0123456789abcdef"):
    _HEX[_char] = _digit
    _HEX[bytes([_char]).upper()[0]] = _digit
_SHIFTS = np.arange(60, -1, -4, dtype=np.uint64)


def parse_keys(path: object, first_line: int, keys: pa.Array, column: str = "common_feature_index") -> np.ndarray:
    """(n,) uint64 common-feature indexes from their 16 hex digits (the real files' form)."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    lengths = pc.binary_length(keys).to_numpy(zero_copy_only=False)
    wrong = lengths != 16
    if wrong.any():
        row = int(wrong.argmax())
        raise DataError(path, f"expected 16 hex digits, found {keys[row].as_py()!r}", line=first_line + row, column=column)
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 16)
    digits = _HEX[data]
    wrong = (digits == 255).any(axis=1)
    if wrong.any():
        row = int(wrong.argmax())
        raise DataError(path, f"expected 16 hex digits, found {keys[row].as_py()!r}", line=first_line + row, column=column)
    return np.bitwise_or.reduce(digits.astype(np.uint64) << _SHIFTS, axis=1)
