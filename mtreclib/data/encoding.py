"""Column encoders: raw values to the arrays models read, fitted on the training split only.

- ``CategoricalEncoder``: ids for single- and multi-valued categorical values. ``build``: the
  training values seen at least ``min_count`` times get ids ``1..V`` by decreasing count (ties
  by value); ``0`` is the out-of-vocabulary slot (rarer, unseen and missing values). An integer
  vocabulary reads a text value as the integer its digits spell (``"007"`` is 7), other text as unseen.
  ``identity``: non-negative integer ids as they are; the vocabulary is the training maximum +
  2, and larger ids map to the last slot, ``max + 1`` (the AliExpress rule). ``hash``: a stable
  hash of the value into ``1..N`` (``0`` for missing).
- ``NumericalEncoder``: missing values filled (or an error), then ``standardize``, ``log1p`` or
  ``minmax`` fitted on the training split.
- ``LabelEncoder``: raw label values to 0/1, by the spec's rule, or a regression target (float32,
  after its transform).

Every encoder is JSON-ready (``to_dict`` / ``from_dict``): the cache and every checkpoint carry
them, so prediction encodes new rows exactly as training did.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.errors import DataError
from mtreclib.data.spec import CategoricalSpec, LabelSpec, NumericalSpec

_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Place:
    """Where a chunk's rows are, for error messages: a file and the line (CSV) or row (Parquet) of its first row.

    ``rows``: when the chunk holds only some rows of what was read (a split cut from a source),
    the position of each among them.
    """

    file: object
    first: int
    lines: bool
    rows: np.ndarray | None = field(default=None, compare=False)

    def error(self, index: int, column: str, message: str) -> DataError:
        position = self.first + int(index if self.rows is None else self.rows[index])
        return DataError(self.file, message, column=column, **({"line": position} if self.lines else {"row": position}))

    def subset(self, rows: np.ndarray) -> Place:
        """The place of the rows ``rows`` of this chunk."""
        return replace(self, rows=rows if self.rows is None else self.rows[rows])


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def check_id_range(ids: np.ndarray, place: Place, column: str) -> None:
    """Integer ids used as they are must fit the cache's int32 ids: ``0 .. 2**31 - 1``."""
    bad = (ids < 0) | (ids > _INT32_MAX)
    if bad.any():
        i = _first(bad)
        raise place.error(i, column, f"expected an id in 0..{_INT32_MAX}, found {ids[i]}")


def normalise_ids(array: pa.Array | pa.ChunkedArray, place: Place, column: str) -> pa.Array:
    """Categorical values as int64 (integers, booleans, integral floats) or strings; nulls kept."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):
        values = array.to_numpy(zero_copy_only=False)
        bad = ~np.isnan(values) & (values != np.round(values))
        if bad.any():
            i = _first(bad)
            raise place.error(i, column, f"expected an integer or string id, found {values[i]}")
        return pc.cast(array, pa.int64(), safe=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    raise DataError(place.file, f"expected integer or string ids, found values of type {kind}", column=column)


class ValueCounter:
    """Counts of every value of a column over the training split, in bounded memory per chunk.

    Each chunk's counts are kept as a small Arrow table and merged (``group_by``) whenever they
    grow past ``merge_rows``, so memory is the number of distinct values, not of rows.
    """

    def __init__(self, merge_rows: int = 4_000_000):
        self.parts: list[pa.Table] = []
        self.pending = 0
        self.merge_rows = merge_rows
        self.missing = 0
        self.total = 0

    def add(self, values: pa.Array) -> None:
        self.total += len(values)
        self.missing += values.null_count
        counts = pc.value_counts(values.drop_null())
        if len(counts) == 0:
            return
        self.parts.append(pa.table({"value": counts.field("values"), "count": counts.field("counts")}))
        self.pending += len(counts)
        if self.pending > self.merge_rows:
            self._merge()

    def _merge(self) -> None:
        if len(self.parts) > 1:
            table = pa.concat_tables(self.parts).group_by("value").aggregate([("count", "sum")])
            self.parts = [table.rename_columns(["value", "count"])]
        self.pending = len(self.parts[0]) if self.parts else 0

    def table(self) -> pa.Table:
        """Distinct values and their counts (columns ``value``, ``count``)."""
        self._merge()
        if not self.parts:
            return pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        return self.parts[0]


def splitmix64(values: np.ndarray) -> np.ndarray:
    """A fixed 64-bit mix of integer values (the same on every machine and run)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class CategoricalEncoder:
    """Ids of one categorical feature (single- or multi-valued), see the module docstring."""

    def __init__(self, spec: CategoricalSpec, *, values: pa.Array | None = None, max_id: int = -1, counts: dict | None = None):
        self.spec = spec
        self.kind = spec.kind
        self._values = values  # build: the vocabulary, id i + 1 is values[i]
        self._max_id = max_id  # identity: the largest training id
        self.stats = counts or {}
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self.owner: CategoricalEncoder | None = None

    def share(self, owner: CategoricalEncoder) -> None:
        """Use ``owner``'s vocabulary (``shared_with``: one table, one vocabulary built from both
        columns): its values, its identity maximum, updated by either column's training ids."""
        self.owner = owner
        self._sorted = None

    @property
    def values(self) -> pa.Array | None:
        return self._values if self.owner is None else self.owner.values

    @property
    def max_id(self) -> int:
        return self._max_id if self.owner is None else self.owner.max_id

    @max_id.setter
    def max_id(self, value: int) -> None:
        if self.owner is None:
            self._max_id = value
        else:
            self.owner.max_id = value

    @property
    def vocab_size(self) -> int:
        if self.kind == "build":
            return len(self.values) + 1
        if self.kind == "identity":
            return max(self.max_id, -1) + 2
        return self.spec.hash_buckets + 1

    @classmethod
    def fit(cls, spec: CategoricalSpec, counter: ValueCounter | None) -> CategoricalEncoder:
        """A ``build`` encoder from the training counts; identity and hash encoders need none."""
        if spec.kind != "build":
            return cls(spec)
        table = counter.table()
        table = table.filter(pc.greater_equal(table["count"], spec.min_count))
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("value", "ascending")])
        values = table["value"].take(order).combine_chunks()
        return cls(spec, values=values, counts={"distinct": counter.table().num_rows, "missing": counter.missing, "total": counter.total})

    def observe_identity(self, ids: np.ndarray) -> None:
        """Track the training maximum of identity ids while the training split is encoded."""
        if len(ids):
            self.max_id = max(self.max_id, int(ids.max()))

    def encode(self, array: pa.Array, place: Place, *, training: bool = False) -> np.ndarray:
        """(n,) int32 ids of ``array``'s values (nulls allowed except for identity ids)."""
        column = self.spec.column
        array = normalise_ids(array, place, column)
        if self.kind == "identity":
            if array.null_count:
                raise place.error(_first(array.is_null().to_numpy(zero_copy_only=False)), column, "missing id; expected a non-negative integer")
            if not pa.types.is_integer(array.type):
                raise DataError(place.file, f"expected integer ids (vocabulary: identity), found values of type {array.type}", column=column)
            ids = array.to_numpy()
            check_id_range(ids, place, column)
            if training:
                self.observe_identity(ids)
                return ids.astype(np.int32)
            return np.minimum(ids, self.max_id + 1).astype(np.int32)
        if self.kind == "hash":
            return self._hash(array)
        return self._lookup(array)

    def _lookup(self, array: pa.Array) -> np.ndarray:
        values = self.values
        if pa.types.is_integer(values.type):
            if not pa.types.is_integer(array.type):
                # Each text value on its own: the integer its digits spell, or unseen. (Deciding per
                # chunk made "007" mean 7 or nothing depending on the rows read with it.)
                digits = pc.match_substring_regex(array, r"^-?[0-9]+$")
                array = pc.cast(pc.if_else(digits, array, pa.scalar(None, array.type)), pa.int64())
            return self._lookup_ints(array)
        if pa.types.is_integer(array.type):
            array = array.cast(pa.string())
        position = pc.index_in(array, value_set=values)
        return pc.fill_null(pc.add(position, 1), 0).to_numpy(zero_copy_only=False).astype(np.int32)

    def _lookup_ints(self, array: pa.Array) -> np.ndarray:
        if self._sorted is None:
            vocab = self.values.to_numpy()
            order = np.argsort(vocab, kind="stable")
            self._sorted = (vocab[order], order.astype(np.int64) + 1)
        keys, ids = self._sorted
        raw = array.to_numpy(zero_copy_only=False)
        valid = ~array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
        raw = np.nan_to_num(raw.astype(np.float64), nan=-1).astype(np.int64) if valid is not None else raw
        if len(keys) == 0:
            return np.zeros(len(raw), dtype=np.int32)
        position = np.minimum(np.searchsorted(keys, raw), len(keys) - 1)
        found = keys[position] == raw
        if valid is not None:
            found &= valid
        return np.where(found, ids[position], 0).astype(np.int32)

    def _hash(self, array: pa.Array) -> np.ndarray:
        buckets = np.uint64(self.spec.hash_buckets)
        if pa.types.is_integer(array.type):
            valid = ~array.is_null().to_numpy(zero_copy_only=False)
            raw = np.asarray(array.fill_null(0).to_numpy(), dtype=np.int64)
            return np.where(valid, (splitmix64(raw) % buckets).astype(np.int64) + 1, 0).astype(np.int32)
        distinct = pc.unique(array.drop_null())
        codes = np.array([zlib.crc32(v.encode()) % int(buckets) + 1 for v in distinct.to_pylist()], dtype=np.int64)
        position = pc.index_in(array, value_set=distinct)
        index = pc.fill_null(position, -1).to_numpy(zero_copy_only=False)
        return np.where(index >= 0, codes[np.maximum(index, 0)] if len(codes) else 0, 0).astype(np.int32)

    def to_dict(self) -> dict[str, Any]:
        # Per-field embedding keys only when set: encodings written before them compare equal.
        spec = {k: v for k, v in self.spec.to_dict().items() if v is not None or k not in ("embedding_dim", "shared_with")}
        data: dict[str, Any] = {"spec": spec, "stats": self.stats}
        if self.kind == "build":
            data["value_type"] = "int" if pa.types.is_integer(self.values.type) else "string"
            data["values"] = self.values.to_pylist()
        elif self.kind == "identity":
            data["max_id"] = self.max_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalEncoder:
        spec = CategoricalSpec.build(data["spec"])
        values = None
        if spec.kind == "build":
            values = pa.array(data["values"], pa.int64() if data["value_type"] == "int" else pa.string())
        return cls(spec, values=values, max_id=int(data.get("max_id", -1)), counts=data.get("stats"))


def _all_digits(array: pa.Array) -> bool:
    """Whether every non-null string is an integer (ids written as text in a CSV)."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return False
    return bool(pc.all(pc.match_substring_regex(array.drop_null(), r"^-?[0-9]+$")).as_py() in (True, None))


@dataclass
class Moments:
    """Running count, sum, sum of squares, minimum and maximum of a numerical column."""

    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self.count += len(values)
            self.total += float(values.sum())
            self.squares += float(np.square(values).sum())
            self.low = min(self.low, float(values.min()))
            self.high = max(self.high, float(values.max()))


class NumericalEncoder:
    """One numerical feature: missing values filled or refused, then the fitted transform."""

    def __init__(self, spec: NumericalSpec, params: dict[str, float] | None = None):
        self.spec = spec
        self.params = params or {}

    def raw(self, array: pa.Array, place: Place) -> np.ndarray:
        """(n,) float64 values with missing ones filled, before the transform; refuses what cannot be."""
        column = self.spec.column
        if pa.types.is_boolean(array.type) or pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
            values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            try:
                values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                text = array.to_pylist()
                for i, value in enumerate(text):
                    try:
                        float(value) if value is not None else None
                    except (TypeError, ValueError):
                        raise place.error(i, column, f"expected a number, found {value!r}") from None
                raise
        missing = np.isnan(values)
        if missing.any():
            if self.spec.fill is None:
                raise place.error(_first(missing), column, "missing value; expected a number (the spec's fill: sets a value for missing entries)")
            values = np.where(missing, self.spec.fill, values)
        bad = ~np.isfinite(values)
        if bad.any():
            i = _first(bad)
            raise place.error(i, column, f"expected a finite number, found {values[i]}")
        if self.spec.transform == "log1p":
            bad = values <= -1
            if bad.any():
                i = _first(bad)
                raise place.error(i, column, f"log1p needs values above -1, found {values[i]}")
        return values

    @classmethod
    def fit(cls, spec: NumericalSpec, moments: Moments) -> NumericalEncoder:
        if spec.transform == "standardize":
            mean = moments.total / max(moments.count, 1)
            variance = max(moments.squares / max(moments.count, 1) - mean * mean, 0.0)
            return cls(spec, {"mean": mean, "std": math.sqrt(variance) or 1.0})
        if spec.transform == "minmax":
            low, high = (moments.low, moments.high) if moments.count else (0.0, 1.0)
            return cls(spec, {"min": low, "max": high})
        return cls(spec)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """The fitted transform of filled values; a constant column scales to 0 under minmax."""
        kind = self.spec.transform
        if kind == "log1p":
            return np.log1p(values)
        if kind == "standardize":
            return (values - self.params["mean"]) / self.params["std"]
        if kind == "minmax":
            span = self.params["max"] - self.params["min"]
            return (values - self.params["min"]) / span if span > 0 else np.zeros_like(values)
        return values

    def encode(self, array: pa.Array, place: Place) -> np.ndarray:
        return self.transform(self.raw(array, place))

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericalEncoder:
        return cls(NumericalSpec.build(data["spec"]), data.get("params"))


class LabelEncoder:
    """One task's 0/1 labels from the raw column, by the spec's rule; or its regression target."""

    def __init__(self, spec: LabelSpec):
        self.spec = spec

    def encode(self, array: pa.Array, place: Place) -> np.ndarray:
        """(n,) uint8 labels, or float32 targets for a regression label (after its transform);
        a missing or unexpected value is an error naming row and column."""
        spec, column = self.spec, self.spec.column
        if spec.regression and spec.fill is not None and array.null_count:
            array = pc.fill_null(pc.cast(array, pa.float64()) if _numeric(array) else array, spec.fill if _numeric(array) else str(spec.fill))
        if array.null_count:
            raise place.error(_first(array.is_null().to_numpy(zero_copy_only=False)), column, "missing label")
        if spec.regression:
            return self._target(array, place)
        if spec.positive:
            numeric = pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
            if numeric:
                try:
                    targets = pa.array([float(v) for v in spec.positive])
                except ValueError:
                    targets = None
                if targets is not None:
                    return pc.is_in(pc.cast(array, pa.float64()), value_set=targets).to_numpy(zero_copy_only=False).astype(np.uint8)
            return pc.is_in(array.cast(pa.string()), value_set=pa.array(list(spec.positive))).to_numpy(zero_copy_only=False).astype(np.uint8)
        values = self._numbers(array, place)
        if spec.threshold is not None:
            return (values > spec.threshold).astype(np.uint8)
        bad = (values != 0) & (values != 1)
        if bad.any():
            i = _first(bad)
            raise place.error(i, column, f"expected a label 0 or 1, found {_text(values[i])} (a threshold: or positive: rule maps other values)")
        return values.astype(np.uint8)

    def _target(self, array: pa.Array, place: Place) -> np.ndarray:
        try:
            values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = array.to_pylist()
            i = next((i for i, v in enumerate(text) if not _is_number(v)), 0)
            raise place.error(i, self.spec.column, f"expected a number (a regression target), found {text[i]!r}") from None
        bad = ~np.isfinite(values)
        if bad.any():
            i = _first(bad)
            raise place.error(i, self.spec.column, f"expected a finite number (a regression target), found {values[i]}")
        if self.spec.transform == "log1p":
            bad = values < 0
            if bad.any():
                i = _first(bad)
                raise place.error(i, self.spec.column, f"expected a value >= 0 for transform: log1p, found {_text(values[i])}")
        values = values * self.spec.scale if self.spec.scale != 1 else values
        if self.spec.transform == "log1p":
            values = np.log1p(values)
        return values.astype(np.float32)

    def _numbers(self, array: pa.Array, place: Place) -> np.ndarray:
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            lowered = pc.utf8_lower(array)
            array = pc.if_else(pc.equal(lowered, "true"), "1", pc.if_else(pc.equal(lowered, "false"), "0", array))
            try:
                return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid:
                text = array.to_pylist()
                for i, value in enumerate(text):
                    try:
                        float(value)
                    except ValueError:
                        raise place.error(i, self.spec.column, f"expected a label 0 or 1, found {value!r}") from None
                raise
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)


def _numeric(array: pa.Array) -> bool:
    return pa.types.is_integer(array.type) or pa.types.is_floating(array.type)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)

