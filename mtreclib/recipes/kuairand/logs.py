"""KuaiRand's interaction logs, streamed: each row checked, joined to its user and video, routed to its split.

A log row is one video shown to one user (19 integer columns, all present). It becomes one output
row: the log's own columns, the user's features, the video's basic features and statistics, and
``hour`` (of ``hourmin``) and ``video_age_days`` (the row's date minus the video's upload date,
0 if the upload date is later). A user or video without a feature row gets nulls there (counted).

Splits go by the row's ``date`` (Beijing time, as the log gives it). The publisher defines no
split: train is its first standard file (up to 2022-04-21, all of ``log_standard_4_08_to_4_21``);
the second file's days are cut here, the recipe's choice, into valid 2022-04-22 .. 04-28 and test
2022-04-29 .. 05-08 (docs/recipes/kuairand.md). Rows keep the files' order within a split (in
Pure's logs, by user then time).

A log may come in parts (27K's standard logs: files.py); each part is a CSV of its own
(header, line numbers) and is converted like a whole file, in the order handed out.

Memory: the log goes through in pieces of ``LOG_CHUNK_BYTES`` of text (about 100,000 rows; joined,
about 100 columns), so it does not grow with the log's length.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mtreclib.recipes.kit import Output, Report, binary, expect, read_pieces
from mtreclib.recipes.kuairand.files import OpenCsv
from mtreclib.recipes.kuairand.tables import BASIC_LAYOUT, STATISTIC_LAYOUT, USER_LAYOUT, FeatureTable, parse_day

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


def _days(source: OpenCsv, dates: np.ndarray, first_line: int) -> np.ndarray:
    """(n,) int64 ``YYYYMMDD`` -> (n,) float64 days since 1970-01-01; a non-date is an error."""
    unique, inverse = np.unique(dates, return_inverse=True)  # a piece spans a few days: few distinct values
    days = np.empty(len(unique))
    for i, value in enumerate(unique):
        day = parse_day(f"{value // 10000:04d}-{value // 100 % 100:02d}-{value % 100:02d}") if 10000101 <= value <= 99991231 else None
        if day is None:
            expect(dates == value, dates, source.name, first_line, "date", "a date YYYYMMDD")
        days[i] = day
    return days[inverse]


def _check(source: OpenCsv, log: pa.Table, first_line: int) -> dict[str, np.ndarray]:
    """The log columns as arrays, after checking the values the parser cannot."""
    columns = {name: log.column(name).to_numpy() for name in LOG_COLUMNS}
    for name in (*LABELS, "is_rand"):
        binary(columns[name], source.name, first_line, name)
    hourmin = columns["hourmin"]
    expect((hourmin < 0) | (hourmin // 100 > 23) | (hourmin % 100 > 59), hourmin, source.name, first_line, "hourmin", "a time of day HHMM (0 .. 2359)")
    expect(columns["duration_ms"] < 0, columns["duration_ms"], source.name, first_line, "duration_ms", "a duration >= 0")
    return columns


def joined_rows(source: OpenCsv, log: pa.Table, first_line: int, tables: dict[str, FeatureTable], report: Report, kind: str) -> tuple[pa.Table, np.ndarray]:
    """The output rows of a parsed log piece, and the (n,) split index (0 train, 1 valid, 2 test) of each.

    Counts in ``report``, by ``kind`` (``standard``, ``random``): ``KIND_no_user``, ``KIND_no_video``,
    ``KIND_no_statistics`` (rows whose user or video has no row there) and ``KIND_without_click_LABEL``
    (rows with a positive ``LABEL`` but ``is_click`` 0).
    """
    columns = _check(source, log, first_line)
    days = _days(source, columns["date"], first_line)
    users, basic, statistics = (tables[layout.stem] for layout in (USER_LAYOUT, BASIC_LAYOUT, STATISTIC_LAYOUT))
    user_rows, user_found = users.positions(columns["user_id"])
    video_rows, video_found = basic.positions(columns["video_id"])
    statistic_rows, statistic_found = statistics.positions(columns["video_id"])
    report.count(f"{kind}_no_user", (~user_found).sum())
    report.count(f"{kind}_no_video", (~video_found).sum())
    report.count(f"{kind}_no_statistics", (~statistic_found).sum())

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
        report.count(f"{kind}_without_click_{name}", ((columns[name] == 1) & ~click).sum())
    return pa.Table.from_arrays(arrays, schema=SCHEMA), np.searchsorted(SPLIT_STARTS, columns["date"], side="right")


def convert_log(
    source: OpenCsv,
    tables: dict[str, FeatureTable],
    output: Output,
    kind: str,
    *,
    chunk_bytes: int = LOG_CHUNK_BYTES,
    progress: bool = True,
) -> None:
    """Stream ``source`` (a log CSV of ``kind``: standard or random) into ``output``'s splits
    (``train`` .., or ``random_train`` ..)."""
    prefix = "" if kind == "standard" else f"{kind}_"
    pieces = read_pieces(source, LOG_COLUMNS, _LOG_TYPES, report=output.report, header=True, chunk_bytes=chunk_bytes, progress=progress)
    for piece, log in pieces:
        table, split_of = joined_rows(source, log, piece.first_line, tables, output.report, kind)
        for index, split in enumerate(SPLITS):
            chosen = split_of == index
            count = int(chosen.sum())
            if count:
                output.write(f"{prefix}{split}", table if count == len(table) else table.filter(pa.array(chosen)))
