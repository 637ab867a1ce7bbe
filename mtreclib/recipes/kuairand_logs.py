"""KuaiRand's interaction logs, streamed: each row checked, joined to its user and video, routed to its split.

A log row is one video shown to one user (19 integer columns, all present). It becomes one output
row: the log's own columns, the user's features, the video's basic features and statistics, and
``hour`` (of ``hourmin``) and ``video_age_days`` (the row's date minus the video's upload date,
0 if the upload date is later). A user or video without a feature row gets nulls there (counted).

Splits go by the row's ``date`` (Beijing time, as the log gives it), aligned with the publisher's
two standard files (the publisher defines no split; the valid/test boundary is a third-party
challenge's starter kit's, docs/recipes/kuairand.md): train up to 2022-04-21 (all of
``log_standard_4_08_to_4_21``), valid 2022-04-22 .. 04-28, test 2022-04-29 .. 05-08. Rows keep
the files' order within a split (in Pure's logs, by user then time).

A log may come in parts (27K's standard logs: kuairand_files.py); each part is a CSV of its own
(header, line numbers) and is converted like a whole file, in the order handed out.

Memory: the log goes through in pieces of ``LOG_CHUNK_BYTES`` of text (about 100,000 rows; joined,
about 100 columns), so it does not grow with the log's length.
"""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import line_pieces, parse_piece, prefetch
from mtreclib.recipes.kuairand_files import OpenCsv, read_header
from mtreclib.recipes.kuairand_tables import BASIC_LAYOUT, STATISTIC_LAYOUT, USER_LAYOUT, FeatureTable, parse_day

LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment", "is_forward",
    "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time", "comment_stay_time", "is_profile_enter",
    "is_rand", "tab",
)  # fmt: skip
LABELS = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view", "is_profile_enter")
OUTCOMES = ("play_time_ms", "profile_stay_time", "comment_stay_time")  # known only after the impression: not features
SPLITS = ("train", "valid", "test")
SPLIT_STARTS = (20220422, 20220429)  # the first day of valid, of test
LOG_CHUNK_BYTES = 8 << 20
ROW_GROUP_ROWS = 1_000_000

_LOG_TYPES = {name: pa.int64() for name in LOG_COLUMNS}
_LEADING = (
    ("user_id", pa.int64()), ("video_id", pa.int64()), ("time_ms", pa.int64()), ("date", pa.int64()), ("hour", pa.int64()),
    ("tab", pa.int64()), ("duration_ms", pa.float32()),
)  # fmt: skip


def output_schema() -> pa.Schema:
    """The columns of every split file, in order."""
    fields = [pa.field(name, kind) for name, kind in _LEADING]
    for layout in (USER_LAYOUT, BASIC_LAYOUT):
        fields += [pa.field(f.name, f.output_type) for f in layout.outputs]
    fields.append(pa.field("video_age_days", pa.float32()))
    fields += [pa.field(f.name, f.output_type) for f in STATISTIC_LAYOUT.outputs]
    fields += [pa.field(name, pa.int8()) for name in LABELS]
    fields += [pa.field(name, pa.int64()) for name in OUTCOMES]
    return pa.schema(fields)


SCHEMA = output_schema()


@dataclass
class LogReport:
    """What converting the logs of one kind (standard or random) did.

    Attributes:
        rows: rows written per split.
        positives: per split, positives per label.
        without_click: rows with a positive label but ``is_click`` 0, per label (is_click excluded).
        no_user, no_video, no_statistics: rows whose user / video has no row in that table.
        raw_bytes: uncompressed size of the log CSVs.
    """

    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    positives: dict[str, dict[str, int]] = field(default_factory=lambda: {s: dict.fromkeys(LABELS, 0) for s in SPLITS})
    without_click: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS[1:], 0))
    no_user: int = 0
    no_video: int = 0
    no_statistics: int = 0
    raw_bytes: int = 0


class SplitWriters:
    """One Parquet file per split (zstd; a row group per piece), written on a worker thread.

    Parquet encoding releases the GIL, so the next piece is parsed and joined meanwhile; at most
    ``depth`` pieces wait. Errors of a write are raised by a later ``write`` or by ``close``.
    """

    def __init__(self, paths: dict[str, Path], depth: int = 2):
        self.paths = paths
        self._writers = {split: pq.ParquetWriter(path, SCHEMA, compression="zstd") for split, path in paths.items()}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtrec-parquet")
        self._pending: deque[Future] = deque()
        self._depth = depth

    def write(self, split: str, table: pa.Table) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._writers[split].write_table, table, row_group_size=ROW_GROUP_ROWS))

    def close(self) -> None:
        """Wait for the pending writes and close the files (also after an error: the caller removes them)."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for writer in self._writers.values():
                writer.close()


def _bad(source: OpenCsv, bad: np.ndarray, values: np.ndarray, first_line: int, column: str, expected: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(source.name, f"expected {expected}, found {values[row]}", line=first_line + row, column=column)


def _days(source: OpenCsv, dates: np.ndarray, first_line: int) -> np.ndarray:
    """(n,) int64 ``YYYYMMDD`` -> (n,) float64 days since 1970-01-01; a non-date is an error."""
    unique, inverse = np.unique(dates, return_inverse=True)  # a piece spans a few days: few distinct values
    days = np.empty(len(unique))
    for i, value in enumerate(unique):
        day = parse_day(f"{value // 10000:04d}-{value // 100 % 100:02d}-{value % 100:02d}") if 10000101 <= value <= 99991231 else None
        if day is None:
            _bad(source, dates == value, dates, first_line, "date", "a date YYYYMMDD")
        days[i] = day
    return days[inverse]


def _check(source: OpenCsv, log: pa.Table, first_line: int) -> dict[str, np.ndarray]:
    """The log columns as arrays, after checking the values the parser cannot."""
    columns = {name: log.column(name).to_numpy() for name in LOG_COLUMNS}
    for name in (*LABELS, "is_rand"):
        _bad(source, (columns[name] != 0) & (columns[name] != 1), columns[name], first_line, name, "0 or 1")
    hourmin = columns["hourmin"]
    _bad(source, (hourmin < 0) | (hourmin // 100 > 23) | (hourmin % 100 > 59), hourmin, first_line, "hourmin", "a time of day HHMM (0 .. 2359)")
    _bad(source, columns["duration_ms"] < 0, columns["duration_ms"], first_line, "duration_ms", "a duration >= 0")
    return columns


def joined_rows(source: OpenCsv, log: pa.Table, first_line: int, tables: dict[str, FeatureTable], report: LogReport) -> tuple[pa.Table, np.ndarray]:
    """The output rows of a parsed log piece, and the (n,) split index (0 train, 1 valid, 2 test) of each."""
    columns = _check(source, log, first_line)
    days = _days(source, columns["date"], first_line)
    users, basic, statistics = (tables[layout.stem] for layout in (USER_LAYOUT, BASIC_LAYOUT, STATISTIC_LAYOUT))
    user_rows, user_found = users.positions(columns["user_id"])
    video_rows, video_found = basic.positions(columns["video_id"])
    statistic_rows, statistic_found = statistics.positions(columns["video_id"])
    report.no_user += int((~user_found).sum())
    report.no_video += int((~video_found).sum())
    report.no_statistics += int((~statistic_found).sum())

    upload = np.where(video_found, basic.days[video_rows], np.nan)
    age = np.maximum(days - upload, 0)  # NaN (a null) where the upload date is unknown

    leading = {name: log.column(name) for name in ("user_id", "video_id", "time_ms", "date", "tab")}
    leading["hour"] = pa.array(columns["hourmin"] // 100)
    leading["duration_ms"] = pa.array(columns["duration_ms"].astype(np.float32))
    arrays = [leading[name] for name, _ in _LEADING]
    arrays += users.take(user_rows, user_found).columns
    arrays += basic.take(video_rows, video_found).columns
    arrays.append(pa.array(age.astype(np.float32), from_pandas=True))  # from_pandas: NaN -> null
    arrays += statistics.take(statistic_rows, statistic_found).columns
    arrays += [pa.array(columns[name].astype(np.int8)) for name in LABELS]
    arrays += [log.column(name) for name in OUTCOMES]

    click = columns["is_click"] == 1
    for name in LABELS[1:]:
        report.without_click[name] += int(((columns[name] == 1) & ~click).sum())
    return pa.Table.from_arrays(arrays, schema=SCHEMA), np.searchsorted(SPLIT_STARTS, columns["date"], side="right")


def convert_log(
    source: OpenCsv,
    tables: dict[str, FeatureTable],
    writers: SplitWriters,
    report: LogReport,
    *,
    chunk_bytes: int = LOG_CHUNK_BYTES,
    progress: bool = True,
) -> None:
    """Stream ``source`` (a log CSV) into ``writers``, adding to ``report``."""
    read_header(source, LOG_COLUMNS)
    rows = 0
    with contextlib.ExitStack() as stack:
        pieces = stack.enter_context(contextlib.closing(prefetch(line_pieces(source.stream, first_line=2, chunk_bytes=chunk_bytes))))
        bar = stack.enter_context(tqdm(total=source.size, unit="B", unit_scale=True, desc=source.csv, disable=None if progress else True, leave=False))
        for piece in pieces:
            log = parse_piece(source.name, piece, LOG_COLUMNS, _LOG_TYPES)
            table, split_of = joined_rows(source, log, piece.first_line, tables, report)
            for index, split in enumerate(SPLITS):
                chosen = split_of == index
                count = int(chosen.sum())
                if count == 0:
                    continue
                part = table if count == len(table) else table.filter(pa.array(chosen))
                writers.write(split, part)
                report.rows[split] += count
                for name in LABELS:
                    report.positives[split][name] += int(np.count_nonzero(part.column(name).to_numpy()))
            rows += len(table)
            bar.update(len(piece.data))
    if rows == 0:
        raise DataError(source.name, f"the file has a header but no rows; expected rows of {len(LOG_COLUMNS)} values")
    report.raw_bytes += source.size
