"""The three small tables of KuaiRand-Pure (users, videos, video statistics), held whole for the join.

They are small by nature: 27,285 users and about 7,600 videos in Pure, about 10 MB of CSV in all
and a few MB as Arrow columns. Each is read, checked, converted to its output columns and sorted
by id; a log row then finds its user's or video's row by binary search.

The columns are the publisher's (https://github.com/chongminggao/KuaiRand, "Data Descriptions"),
with the missing values as pandas writes them: an empty field. Pandas also writes an integer
column that has gaps as floats (``3.0``), so integer codes are read as numbers and checked to be
whole. What each column becomes is declared once here (``Feature``); the output schema and the
dataset spec are both built from these declarations.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.data.csvchunks import CHUNK_BYTES, line_pieces, parse_piece
from mtreclib.errors import DataError
from mtreclib.recipes.kuairand_files import OpenCsv, read_header

KINDS = ("text", "code", "count", "ratio", "tags", "date")


@dataclass(frozen=True)
class Feature:
    """A column of a feature table and what it becomes.

    Attributes:
        raw: the CSV's column.
        kind: ``text``: a string category, written as it is (``UNKNOWN`` is a value); ``code``: an
            integer category, int64; ``count``: a non-negative amount, float32, ``log1p`` in the spec;
            ``ratio``: a number, float32, standardized in the spec; ``tags``: comma-separated
            integer ids, a list<int64> column (empty list for an empty field); ``date``:
            ``YYYY-MM-DD``, not written, but turned into a video's age on the day of each log row.
            Every kind may be missing (an empty field): a null category, a gap filled with 0.
        role: the spec's role of a category: user, item or author.
        name: the output column (default: ``raw``).
    """

    raw: str
    kind: str
    role: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if not self.name:
            object.__setattr__(self, "name", self.raw)

    @property
    def output_type(self) -> pa.DataType | None:
        return {"text": pa.string(), "code": pa.int64(), "count": pa.float32(), "ratio": pa.float32(), "tags": pa.list_(pa.int64())}.get(
            self.kind
        )


@dataclass(frozen=True)
class TableLayout:
    """One feature CSV: its header, its id column, and its other columns as features."""

    csv: str
    id_column: str
    features: tuple[Feature, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.id_column, *(f.raw for f in self.features))

    @property
    def outputs(self) -> tuple[Feature, ...]:
        """The features that become output columns (all but the dates)."""
        return tuple(f for f in self.features if f.output_type is not None)


_ONEHOT = tuple(f"onehot_feat{i}" for i in range(18))

USER_LAYOUT = TableLayout(
    "user_features_pure.csv",
    "user_id",
    (
        Feature("user_active_degree", "text", "user"),
        Feature("is_lowactive_period", "code", "user"),
        Feature("is_live_streamer", "code", "user"),
        Feature("is_video_author", "code", "user"),
        Feature("follow_user_num", "count"),
        Feature("follow_user_num_range", "text", "user"),
        Feature("fans_user_num", "count"),
        Feature("fans_user_num_range", "text", "user"),
        Feature("friend_user_num", "count"),
        Feature("friend_user_num_range", "text", "user"),
        Feature("register_days", "count"),
        Feature("register_days_range", "text", "user"),
        *(Feature(name, "code", "user") for name in _ONEHOT),
    ),
)

BASIC_LAYOUT = TableLayout(
    "video_features_basic_pure.csv",
    "video_id",
    (
        Feature("author_id", "code", "author"),
        Feature("video_type", "text", "item"),
        Feature("upload_dt", "date"),
        Feature("upload_type", "text", "item"),
        Feature("visible_status", "code", "item"),
        Feature("video_duration", "count"),
        Feature("server_width", "code", "item"),
        Feature("server_height", "code", "item"),
        Feature("music_id", "code", "item"),
        Feature("music_type", "code", "item"),
        Feature("tag", "tags", "item"),
    ),
)

_STATISTICS = (
    "counts show_cnt show_user_num play_cnt play_user_num play_duration complete_play_cnt complete_play_user_num "
    "valid_play_cnt valid_play_user_num long_time_play_cnt long_time_play_user_num short_time_play_cnt "
    "short_time_play_user_num play_progress comment_stay_duration like_cnt like_user_num click_like_cnt "
    "double_click_cnt cancel_like_cnt cancel_like_user_num comment_cnt comment_user_num direct_comment_cnt "
    "reply_comment_cnt delete_comment_cnt delete_comment_user_num comment_like_cnt comment_like_user_num follow_cnt "
    "follow_user_num cancel_follow_cnt cancel_follow_user_num share_cnt share_user_num download_cnt download_user_num "
    "report_cnt report_user_num reduce_similar_cnt reduce_similar_user_num collect_cnt collect_user_num "
    "cancel_collect_cnt cancel_collect_user_num direct_comment_user_num reply_comment_user_num share_all_cnt "
    "share_all_user_num outsite_share_all_cnt"
).split()

# Prefixed: the statistics' follow_user_num would otherwise collide with the user's, and the prefix
# marks what they are (daily averages over the whole month, test days included).
STATISTIC_LAYOUT = TableLayout(
    "video_features_statistic_pure.csv",
    "video_id",
    tuple(Feature(name, "ratio" if name == "play_progress" else "count", name=f"stat_{name}") for name in _STATISTICS),
)

_READ_TYPES = {"text": pa.string(), "date": pa.string(), "tags": pa.string(), "code": pa.float64(), "count": pa.float64(), "ratio": pa.float64()}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TAG = re.compile(r"\d+")
EPOCH = datetime.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class FeatureTable:
    """A feature table's rows, in ascending id order.

    Attributes:
        source: how messages name its file.
        ids: (N,) int64, ascending, distinct.
        columns: N rows of the output columns (``TableLayout.outputs``).
        days: (N,) float64 days since 1970-01-01 of the table's date column (NaN where missing);
            None for tables without one.
    """

    source: str
    ids: np.ndarray
    columns: pa.Table
    days: np.ndarray | None = None

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found) of ``ids`` (n,): the row of each id, and whether it has one (n,) bool."""
        if len(self.ids) == 0:
            return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
        position = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return position, self.ids[position] == ids

    def take(self, position: np.ndarray, found: np.ndarray) -> pa.Table:
        """The rows at ``position`` (n,); all-null rows where not ``found``."""
        return self.columns.take(pa.array(position, mask=~found))


def _fail(source: OpenCsv, message: str, line: int, column: str) -> NoReturn:
    raise DataError(source.name, message, line=line, column=column)


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _numbers(source: OpenCsv, feature: Feature, values: pa.ChunkedArray, first_line: int) -> pa.Array:
    """A numeric column, checked for its kind, as its output type."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    numbers = array.to_numpy(zero_copy_only=False)  # nulls become NaN
    present = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
    if (bad := present & ~np.isfinite(numbers)).any():
        row = _first(bad)
        _fail(source, f"expected a finite number, found {numbers[row]}", first_line + row, feature.raw)
    if feature.kind == "code":
        if (bad := present & (numbers != np.round(numbers))).any():
            row = _first(bad)
            _fail(source, f"expected an integer code, found {numbers[row]}", first_line + row, feature.raw)
        return pc.cast(array, pa.int64())
    if feature.kind == "count" and (bad := present & (numbers <= -1)).any():
        row = _first(bad)
        _fail(source, f"expected a count (>= 0; log1p needs > -1), found {numbers[row]}", first_line + row, feature.raw)
    return pc.cast(array, pa.float32())


def _tags(source: OpenCsv, feature: Feature, values: pa.ChunkedArray, first_line: int) -> pa.Array:
    """``"12,65"`` -> [12, 65]; a missing field -> []."""
    lists = []
    for row, text in enumerate(values.to_pylist()):
        parts = text.split(",") if text else []
        for part in parts:
            if not _TAG.fullmatch(part):
                _fail(source, f"expected comma-separated integer tag ids, found {text!r}", first_line + row, feature.raw)
        lists.append([int(part) for part in parts])
    return pa.array(lists, type=pa.list_(pa.int64()))


def parse_day(text: str) -> int | None:
    """``YYYY-MM-DD`` -> days since 1970-01-01; None if it is not a calendar date."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    try:
        return datetime.date(*map(int, match.groups())).toordinal() - EPOCH
    except ValueError:
        return None


def _days(source: OpenCsv, feature: Feature, values: pa.ChunkedArray, first_line: int) -> np.ndarray:
    days = np.full(len(values), np.nan)
    for row, text in enumerate(values.to_pylist()):
        if text is None:
            continue
        day = parse_day(text)
        if day is None:
            _fail(source, f"expected a date YYYY-MM-DD, found {text!r}", first_line + row, feature.raw)
        days[row] = day
    return days


def read_table(source: OpenCsv, layout: TableLayout, *, chunk_bytes: int = CHUNK_BYTES) -> FeatureTable:
    """``source`` (a CSV of ``layout``), checked and converted, sorted by id.

    Raises ``DataError`` naming the line and column of the first bad value, of a second row for
    an id, or for a file without rows.
    """
    read_header(source, layout.columns)
    types = {layout.id_column: pa.int64(), **{f.raw: _READ_TYPES[f.kind] for f in layout.features}}
    nullable = tuple(f.raw for f in layout.features)
    pieces = []
    for piece in line_pieces(source.stream, first_line=2, chunk_bytes=chunk_bytes):
        pieces.append(parse_piece(source.name, piece, layout.columns, types, nullable=nullable))
    if not pieces or sum(len(p) for p in pieces) == 0:
        raise DataError(source.name, f"the file has a header but no rows; expected rows of {len(layout.columns)} values")
    table = pa.concat_tables(pieces)
    del pieces
    # Rows are whole lines from line 2 on (parse_piece refuses empty lines), so row r is line r + 2.
    ids = table.column(layout.id_column).to_numpy()
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if (repeated := np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])).size:
        first, second = sorted(int(order[i]) + 2 for i in (repeated[0], repeated[0] + 1))
        raise DataError(
            source.name,
            f"{layout.id_column} {sorted_ids[repeated[0]]} has a second row (the first is line {first}); one row per id is expected",
            line=second,
            column=layout.id_column,
        )
    arrays, names, days = [], [], None
    for feature in layout.features:
        values = table.column(feature.raw)
        if feature.kind == "date":
            days = _days(source, feature, values, 2)[order]
            continue
        if feature.kind == "text":
            array = values.combine_chunks()
        elif feature.kind == "tags":
            array = _tags(source, feature, values, 2)
        else:
            array = _numbers(source, feature, values, 2)
        arrays.append(array.take(pa.array(order)))
        names.append(feature.name)
    return FeatureTable(source.name, sorted_ids, pa.Table.from_arrays(arrays, names=names), days)

