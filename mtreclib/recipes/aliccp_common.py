"""One split's common features (the user side), held in memory for the join, and looked up by index.

Every skeleton line names a line of the common-features file by its 16-hex-digit index, and takes
the user's fields from it. The table is held in a compact form: per field, each line's feature
count, and the features as int32 ids with float32 values (8 bytes a feature), plus the indexes
sorted for a binary search. The real training file has 730,599 lines and about 8 GB of text, or
roughly 360 million features at ~22 bytes each: some 3 GB held (the test file, 884,211 lines and
about 10 GB, some 3.6 GB). It does not grow with the number of samples.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from mtreclib.data.csvchunks import Dialect, line_pieces, parse_piece, prefetch
from mtreclib.errors import DataError
from mtreclib.recipes.aliccp_features import COMMON, FIELDS, FieldValues, parse_features, parse_keys
from mtreclib.recipes.aliccp_files import RawFile

COLUMNS = ("common_feature_index", "feature_count", "feature_list")
TYPES = {"common_feature_index": pa.string(), "feature_count": pa.int64(), "feature_list": pa.string()}
DIALECT = Dialect(",", quoted=False)
USER_FIELDS = tuple(field for field in FIELDS if field.side == COMMON)
# Parsing expands a piece of text ~14-fold while it works (each feature is split into three
# strings, then numbers), so both files go in pieces of 8 MB rather than csvchunks' 32 MB.
PIECE_BYTES = 8 << 20


@dataclass(frozen=True)
class CommonTable:
    """A split's common-features lines, in file order.

    Attributes:
        sorted_keys: (K,) uint64 indexes, ascending.
        order: (K,) the file row of each entry of ``sorted_keys``.
        fields: per user field, all lines' features (``FieldValues`` over the K lines).
        offsets: per user field, (K + 1,) int64 starts of each line's features.
        features: how many features the table holds in all.
    """

    sorted_keys: np.ndarray
    order: np.ndarray
    fields: dict[str, FieldValues]
    offsets: dict[str, np.ndarray]
    features: int

    @property
    def rows(self) -> int:
        return len(self.sorted_keys)

    @property
    def nbytes(self) -> int:
        held = [self.sorted_keys, self.order, *self.offsets.values()]
        held += [array for values in self.fields.values() for array in (values.counts, values.ids, values.weights)]
        return sum(array.nbytes for array in held)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) file rows of ``keys``, and an (n,) mask of the keys found."""
        at = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return self.order[at], self.sorted_keys[at] == keys

    def take(self, rows: np.ndarray) -> dict[str, FieldValues]:
        """The user fields of file rows ``rows`` (repeats allowed), ids widened to int64."""
        out = {}
        for name, values in self.fields.items():
            counts = values.counts[rows]
            starts = self.offsets[name][rows]
            # Ragged gather: entry j of output line i is feature starts[i] + j.
            total = int(counts.sum())
            line_starts = np.cumsum(counts) - counts
            index = np.arange(total, dtype=np.int64) + np.repeat(starts - line_starts, counts)
            out[name] = FieldValues(counts, values.ids[index].astype(np.int64), values.weights[index])
        return out


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """``parts`` concatenated, each freed once copied (``parts`` ends empty): the peak is the
    result plus one part, where ``np.concatenate`` would hold all parts and the result."""
    out = np.empty(sum(len(part) for part in parts), dtype=parts[0].dtype)
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
    return out


def read_common(source: RawFile, *, chunk_bytes: int = PIECE_BYTES, progress: bool = True) -> tuple[CommonTable, int]:
    """The common-features file, checked line by line, ready for lookups; and its size in bytes."""
    keys = []
    per_field = {field.name: ([], [], []) for field in USER_FIELDS}  # counts, ids, weights of each piece
    with contextlib.ExitStack() as stack:
        stream, size = stack.enter_context(source.open())
        pieces = stack.enter_context(contextlib.closing(prefetch(line_pieces(stream, chunk_bytes=chunk_bytes))))
        bar = stack.enter_context(
            tqdm(total=size, unit="B", unit_scale=True, desc=source.csv_name, disable=None if progress else True, leave=False)
        )
        for piece in pieces:
            data = parse_piece(source.name, piece, COLUMNS, TYPES, dialect=DIALECT, nullable=("feature_list",))
            keys.append(parse_keys(source.name, piece.first_line, data.column("common_feature_index")))
            counts = data.column("feature_count").to_numpy()
            lists = data.column("feature_list").combine_chunks()
            for name, values in parse_features(source.name, piece.first_line, lists, counts, COMMON).items():
                for parts, array in zip(per_field[name], (values.counts.astype(np.int32), values.ids, values.weights)):
                    parts.append(array)
            del data, lists
            bar.update(piece.data.nbytes)
    if not keys:
        raise DataError(source.name, f"the file is empty; expected lines of {len(COLUMNS)} values ({', '.join(COLUMNS)})")
    key = _joined(keys)
    fields, offsets = {}, {}
    for name, (counts, ids, weights) in per_field.items():
        fields[name] = FieldValues(_joined(counts), _joined(ids), _joined(weights))
        offsets[name] = np.concatenate([[0], np.cumsum(fields[name].counts, dtype=np.int64)])
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    repeated = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(repeated):
        first, second = sorted(int(order[i]) + 1 for i in (repeated[0], repeated[0] + 1))
        raise DataError(
            source.name,
            f"common feature index {int(sorted_keys[repeated[0]]):016x} has a second line (the first is line {first}); "
            "an index has one line",
            line=second,
            column="common_feature_index",
        )
    features = sum(len(values.ids) for values in fields.values())
    return CommonTable(sorted_keys, order, fields, offsets, features), size
