"""One split's common features (the user side): the histories streamed out as a side table, the rest held for the join.

Every skeleton line names a line of the common-features file by its 16-hex-digit index. Such a
line holds a user's profile (101, 121..129: one id each) and behaviour histories (109_14,
110_14, 127_14, 150_14: ~500 features in all), and serves ~58 impressions. The histories go
straight from each piece of text into the side table (``common_<split>.parquet``: one row per
line, stored once), so they are never held; the profile ids are held, with the indexes sorted
for a binary search, to be joined onto each impression: ~105 bytes a line, some 77 MB for the
real training file's 730,599 lines (93 MB for the test file's 884,211). It grows with the
number of common-features lines, not of samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mtreclib.data.csvchunks import Dialect
from mtreclib.recipes.aliccp.features import COMMON, FIELDS, FieldValues, parse_features, parse_keys, weight_column
from mtreclib.recipes.kit import RawFile, Report, distinct_lines, read_pieces

COLUMNS = ("common_feature_index", "feature_count", "feature_list")
TYPES = {"common_feature_index": pa.string(), "feature_count": pa.int64(), "feature_list": pa.string()}
DIALECT = Dialect(",", quoted=False)
HISTORIES = tuple(field for field in FIELDS if field.side == COMMON and field.multi)
PROFILE = tuple(field for field in FIELDS if field.side == COMMON and not field.multi)
# Parsing expands a piece of text ~14-fold while it works (each feature is split into three
# strings, then numbers), so both files go in pieces of 8 MB rather than csvchunks' 32 MB.
PIECE_BYTES = 8 << 20


def side_schema() -> pa.Schema:
    """The columns of ``common_<split>.parquet``: the index (the side table's key), then each history and its values."""
    columns = [pa.field("common_feature_index", pa.int64(), nullable=False)]
    for field in HISTORIES:
        columns.append(pa.field(field.name, pa.list_(pa.int64()), nullable=False))
        columns.append(pa.field(weight_column(field), pa.list_(pa.float32()), nullable=False))
    return pa.schema(columns)


SIDE_SCHEMA = side_schema()


def list_columns(values: FieldValues) -> list[pa.Array]:
    """A multi-valued field over n lines: its list of ids and the parallel list of values."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(values.counts, dtype=np.int64)]).astype(np.int32))
    return [pa.ListArray.from_arrays(offsets, pa.array(values.ids)), pa.ListArray.from_arrays(offsets, pa.array(values.weights))]


@dataclass(frozen=True)
class CommonTable:
    """A split's common-features lines as the join needs them: their indexes and profile ids.

    Attributes:
        sorted_keys: (K,) uint64 indexes, ascending.
        order: (K,) the file row of each entry of ``sorted_keys``.
        profile: per profile field (101, 121..129), (K,) int64 ids by file row (0 where absent).
        present: per profile field, (K,) bool: whether the line has it.
        features: how many history features the lines hold (written to the side table).
    """

    sorted_keys: np.ndarray
    order: np.ndarray
    profile: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    features: int

    @property
    def rows(self) -> int:
        return len(self.sorted_keys)

    @property
    def nbytes(self) -> int:
        held = [self.sorted_keys, self.order, *self.profile.values(), *self.present.values()]
        return sum(array.nbytes for array in held)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) file rows of ``keys``, and an (n,) mask of the keys found."""
        at = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return self.order[at], self.sorted_keys[at] == keys

    def take(self, rows: np.ndarray) -> dict[str, FieldValues]:
        """The profile fields of file rows ``rows`` (n,), repeats allowed."""
        out = {}
        for name, ids in self.profile.items():
            present = self.present[name][rows]
            out[name] = FieldValues(present.astype(np.int64), ids[rows][present], np.ones(int(present.sum()), np.float32))
        return out


def read_common(
    source: RawFile, write: Callable[[pa.Table], None], *, chunk_bytes: int = PIECE_BYTES, progress: bool = True, report: Report | None = None
) -> CommonTable:
    """The common-features file, checked line by line: ``write`` gets each piece's side-table rows
    (``SIDE_SCHEMA``, in file order); returns the table for the join."""
    keys = []
    profile = {field.name: ([], []) for field in PROFILE}  # ids, presence of each piece
    features = 0
    with source.open() as file:
        pieces = read_pieces(file, COLUMNS, TYPES, report=report, chunk_bytes=chunk_bytes, progress=progress, dialect=DIALECT, nullable=("feature_list",))
        for piece, data in pieces:
            key = parse_keys(file.name, piece.first_line, data.column("common_feature_index"))
            keys.append(key)
            counts = data.column("feature_count").to_numpy()
            lists = data.column("feature_list").combine_chunks()
            fields = parse_features(file.name, piece.first_line, lists, counts, COMMON)
            del data, lists
            for field in PROFILE:
                values = fields[field.name]
                present = values.counts > 0
                ids = np.zeros(len(present), dtype=np.int64)
                ids[present] = values.ids
                profile[field.name][0].append(ids)
                profile[field.name][1].append(present)
            arrays = [pa.array(key.view(np.int64))]
            for field in HISTORIES:
                arrays += list_columns(fields[field.name])
                features += len(fields[field.name].ids)
            write(pa.Table.from_arrays(arrays, schema=SIDE_SCHEMA))
    key = np.concatenate(keys)
    order, sorted_keys = distinct_lines(key, source.name, "common_feature_index", lambda k: f"common feature index {int(k):016x}", "line", "an index has one line")
    ids = {name: np.concatenate(parts[0]) for name, parts in profile.items()}
    present = {name: np.concatenate(parts[1]) for name, parts in profile.items()}
    return CommonTable(sorted_keys, order, ids, present, features)
