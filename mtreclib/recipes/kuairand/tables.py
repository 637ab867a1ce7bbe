"""The three feature tables of KuaiRand (users, videos, video statistics), for the join with the logs.

Their size is the version's: Pure has 27,285 users and 7,583 videos (10 MB of CSV), 1K 1,000
users and 4.4M videos (3.5 GB), 27K 27,285 users and 32M videos (23 GB, the statistics in three
parts). So they are not held in memory: each is read piece by piece, checked and converted to its
output columns, and written to a file of Arrow record batches in a scratch folder, which is then
memory-mapped (the operating system keeps in memory what the join touches, and can drop it).
Per row, the ids (sorted), the position of each and the videos' upload days go to files there
too, memory-mapped as well; only sorting the ids holds about 24 bytes per row for a moment. A
log row finds its user's or video's row by binary search in the sorted ids.

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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import CHUNK_BYTES
from mtreclib.recipes.kit import Report, expect, first, read_pieces, sort_distinct
from mtreclib.recipes.kuairand.files import USERS, VIDEOS_BASIC, VIDEOS_STATISTIC, OpenCsv

KINDS = ("text", "code", "count", "ratio", "tags", "date")
BATCH_BYTES = 64 << 20  # converted rows gathered before a record batch is written


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
    """One feature CSV (``stem``: which of the six files, files.py): its header, its id
    column, and its other columns as features."""

    stem: str
    id_column: str
    features: tuple[Feature, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.id_column, *(f.raw for f in self.features))

    @property
    def outputs(self) -> tuple[Feature, ...]:
        """The features that become output columns (all but the dates)."""
        return tuple(f for f in self.features if f.output_type is not None)

    @property
    def schema(self) -> pa.Schema:
        """The output columns."""
        return pa.schema([pa.field(f.name, f.output_type) for f in self.outputs])

    @property
    def date(self) -> Feature | None:
        """The date column, if the table has one."""
        return next((f for f in self.features if f.kind == "date"), None)


_ONEHOT = tuple(f"onehot_feat{i}" for i in range(18))

USER_LAYOUT = TableLayout(
    USERS,
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
    VIDEOS_BASIC,
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
    VIDEOS_STATISTIC,
    "video_id",
    tuple(Feature(name, "ratio" if name == "play_progress" else "count", name=f"stat_{name}") for name in _STATISTICS),
)

_READ_TYPES = {"text": pa.string(), "date": pa.string(), "tags": pa.string(), "code": pa.float64(), "count": pa.float64(), "ratio": pa.float64()}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
EPOCH = datetime.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class FeatureTable:
    """A feature table's rows, memory-mapped, in the order they were read; found by id.

    Attributes:
        source: how messages name its file (its first part).
        ids: (N,) int64, ascending, distinct.
        rows: (N,) int64, the row (in reading order) of each of ``ids``.
        batches: the rows, in reading order, as record batches of the output columns (``TableLayout.outputs``).
        starts: (B,) int64, the first row of each batch.
        schema: the output columns.
        days: (N,) float64 days since 1970-01-01 of the table's date column, in reading order (NaN
            where missing); None for tables without one.
    """

    source: str
    ids: np.ndarray
    rows: np.ndarray
    batches: tuple[pa.RecordBatch, ...]
    starts: np.ndarray
    schema: pa.Schema
    days: np.ndarray | None = None

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, found) of ``ids`` (n,): the row of each id, and whether it has one (n,) bool."""
        position = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.asarray(self.rows[position]), np.asarray(self.ids[position] == ids)

    def take(self, rows: np.ndarray, found: np.ndarray) -> pa.Table:
        """The rows ``rows`` (n,); all-null rows where not ``found``.

        Gathered batch by batch (a take on the whole chunked table may concatenate each column
        into memory first, depending on PyArrow's version), then put in the order asked.
        """
        wanted = np.flatnonzero(found)
        chosen = rows[wanted]
        batch = np.searchsorted(self.starts, chosen, side="right") - 1
        order = np.argsort(batch, kind="stable")
        parts = []
        if len(order):
            for group in np.split(order, np.flatnonzero(np.diff(batch[order])) + 1):
                b = int(batch[group[0]])
                parts.append(self.batches[b].take(pa.array(chosen[group] - self.starts[b])))
        gathered = pa.Table.from_batches(parts, schema=self.schema)
        index = np.zeros(len(rows), dtype=np.int64)
        index[wanted[order]] = np.arange(len(order))
        return gathered.take(pa.array(index, mask=~found))


def _numbers(source: OpenCsv, feature: Feature, values: pa.ChunkedArray, first_line: int) -> pa.Array:
    """A numeric column, checked for its kind, as its output type."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    numbers = array.to_numpy(zero_copy_only=False)  # nulls become NaN
    present = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
    expect(present & ~np.isfinite(numbers), numbers, source.name, first_line, feature.raw, "a finite number")
    if feature.kind == "code":
        expect(present & (numbers != np.round(numbers)), numbers, source.name, first_line, feature.raw, "an integer code")
        return pc.cast(array, pa.int64())
    if feature.kind == "count":
        expect(present & (numbers <= -1), numbers, source.name, first_line, feature.raw, "a count (>= 0; log1p needs > -1)")
    return pc.cast(array, pa.float32())


def _tags(source: OpenCsv, feature: Feature, values: pa.ChunkedArray, first_line: int) -> pa.Array:
    """``"12,65"`` -> [12, 65]; a missing field -> []."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    lists = pc.split_pattern(array, ",")  # a missing field stays null: an empty list below
    flat = pc.list_flatten(lists)
    # Ids of at most 18 digits fit int64; more is reported as not an id.
    good = pc.and_(pc.match_substring_regex(flat, r"^[0-9]+$"), pc.less_equal(pc.utf8_length(flat), 18))
    if not pc.all(good).as_py() and len(flat):
        row = int(pc.list_parent_indices(lists)[first(~good.to_numpy(zero_copy_only=False))].as_py())
        raise DataError(source.name, f"expected comma-separated integer tag ids, found {array[row].as_py()!r}", line=first_line + row, column=feature.raw)
    return pa.ListArray.from_arrays(lists.offsets, pc.cast(flat, pa.int64()))


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
    """(n,) float64 days since 1970-01-01 (NaN where missing); each distinct date parsed once."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    distinct = pc.unique(array.drop_null())
    days = np.array([np.nan if (day := parse_day(text)) is None else day for text in distinct.to_pylist()], dtype=np.float64)
    if np.isnan(days).any():
        bad = pc.is_in(array, value_set=distinct.filter(pa.array(np.isnan(days)))).to_numpy(zero_copy_only=False)
        expect(bad, array, source.name, first_line, feature.raw, "a date YYYY-MM-DD")
    index = pc.index_in(array, value_set=distinct)
    present = ~np.asarray(index.is_null().to_numpy(zero_copy_only=False))
    out = np.full(len(array), np.nan)
    out[present] = days[index.drop_null().to_numpy()]
    return out


def _mapped(path: Path, array: np.ndarray) -> np.ndarray:
    """``array`` saved to ``path`` and memory-mapped back, read-only."""
    np.save(path, array)
    return np.load(path, mmap_mode="r")


class TableBuilder:
    """One feature table read part by part (``add``) into ``folder``, then found by id (``finish``).

    Each piece of CSV is parsed, checked and converted on its own; converted rows go to
    ``folder/<stem>.arrow`` in record batches of about ``batch_bytes``, the ids and upload days
    to raw files beside it. While reading, memory holds one piece and one batch, whatever the
    table's size; ``finish`` sorts the ids, holding about 24 bytes per row for a moment, and maps
    everything back.
    """

    def __init__(self, layout: TableLayout, folder: Path, *, chunk_bytes: int = CHUNK_BYTES, batch_bytes: int = BATCH_BYTES):
        self.layout = layout
        self.folder = folder
        self.chunk_bytes = chunk_bytes
        self.batch_bytes = batch_bytes
        self.rows = 0
        self._path = folder / f"{layout.stem}.arrow"
        self._sink = pa.OSFile(str(self._path), "wb")
        self._writer = pa.ipc.new_file(self._sink, layout.schema)
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._ids = open(folder / f"{layout.stem}.ids", "wb")  # int64, reading order
        self._days = open(folder / f"{layout.stem}.days", "wb") if layout.date is not None else None  # float64
        self._parts: list[tuple[int, str]] = []  # (first row, source name) of each part read

    def add(self, source: OpenCsv, *, progress: bool = False, report: Report | None = None) -> None:
        """Read ``source``, a CSV (or one part of it) of the layout.

        Raises ``DataError`` naming the line and column of the first bad value, or for a file
        without rows.
        """
        layout = self.layout
        types = {layout.id_column: pa.int64(), **{f.raw: _READ_TYPES[f.kind] for f in layout.features}}
        nullable = tuple(f.raw for f in layout.features)
        self._parts.append((self.rows, source.name))
        pieces = read_pieces(source, layout.columns, types, report=report, header=True, chunk_bytes=self.chunk_bytes, progress=progress, nullable=nullable)
        for piece, table in pieces:
            self._ids.write(table.column(layout.id_column).to_numpy().astype(np.int64).tobytes())
            arrays = []
            for feature in layout.features:
                values = table.column(feature.raw)
                if feature.kind == "date":
                    self._days.write(_days(source, feature, values, piece.first_line).tobytes())
                elif feature.kind == "text":
                    arrays.append(values.combine_chunks())
                elif feature.kind == "tags":
                    arrays.append(_tags(source, feature, values, piece.first_line))
                else:
                    arrays.append(_numbers(source, feature, values, piece.first_line))
            converted = pa.Table.from_arrays(arrays, schema=layout.schema)
            self._pending.append(converted)
            self._pending_bytes += converted.nbytes
            self.rows += len(table)
            if self._pending_bytes >= self.batch_bytes:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending).combine_chunks())
        self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        """Close the files (also after an error: the caller removes the folder)."""
        for handle in (self._ids, self._days):
            if handle is not None:
                handle.close()
        if not self._sink.closed:
            try:
                self._writer.close()
            finally:
                self._sink.close()

    def _where(self, row: int) -> tuple[str, int]:
        """(source name, line) of row ``row`` (in reading order)."""
        first, name = max(part for part in self._parts if part[0] <= row)
        return name, row - first + 2

    def finish(self) -> FeatureTable:
        """The table, found by id. Raises ``DataError`` for an id with two rows."""
        self._flush()
        self.close()
        layout = self.layout
        read = np.fromfile(self._ids.name, dtype=np.int64)  # in reading order
        order, ids, repeat = sort_distinct(read)
        if repeat is not None:
            (first_name, first_line), (second_name, second_line) = (self._where(row) for row in repeat)
            earlier = f"line {first_line}" if first_name == second_name else f"line {first_line} of {first_name}"
            raise DataError(
                second_name,
                f"{layout.id_column} {read[repeat[0]]} has a second row (the first is {earlier}); one row per id is expected",
                line=second_line,
                column=layout.id_column,
            )
        del read
        stem = self.folder / layout.stem
        ids, order = _mapped(stem.with_suffix(".ids.npy"), ids), _mapped(stem.with_suffix(".rows.npy"), order)
        days = None if self._days is None else np.memmap(self._days.name, dtype=np.float64, mode="r")
        reader = pa.ipc.open_file(pa.memory_map(str(self._path)))
        batches = tuple(reader.get_batch(i) for i in range(reader.num_record_batches))
        starts = np.cumsum([0] + [len(b) for b in batches[:-1]]).astype(np.int64)
        return FeatureTable(self._parts[0][1], ids, order, batches, starts, layout.schema, days)
