"""The raw AliExpress download to the processed layout, streaming.

A user row is one search page: 33 columns ``user_1 .. user_33``, ``user_1`` the search id. An item
row is one impression: 49 columns ``item_1 .. item_49``, ``item_1`` its page's search id,
``item_49`` the label (0 nothing, 1 click, 2 click and purchase). Each item row is joined to its
page's user row on the search id, and becomes one processed row:

- ``search_id`` = ``user_1``;
- ``categorical_1 .. 16`` = ``user_2 .. user_8, user_32, user_33, item_19, item_34, item_35,
  item_36, item_40, item_41, item_42``;
- ``numerical_1 .. 63`` = ``user_9 .. user_31``, then ``item_2 .. item_48`` without the seven
  categorical item columns;
- ``click`` = label >= 1, ``conversion`` = label == 2.

These are the columns and values of the original MTReclib's ``data/preprocess.py``. Rows come in
the item file's order (the original's pandas merge orders them by the user file; on the real
files, where both are in page order, that is the same order). Numerical values are checked to be
finite numbers and then copied as the raw file's text: the same values exactly, and no float
formatting (the slowest part of writing CSV). The original's pandas round trip could write a value
one float64 ulp off (``0.33557800000000004`` for ``0.335578``), which vanishes in the float32
features models train on.

Memory: one split's user table is held (sorted by search id, about 300 bytes a page); item rows
go through in pieces of ``CHUNK_BYTES`` of text, so memory does not grow with the item count.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import CHUNK_BYTES, line_pieces, parse_piece, prefetch
from mtreclib.data.encoding import Place, check_id_range
from mtreclib.data.processed import COLUMNS
from mtreclib.recipes import register_recipe
from mtreclib.recipes.aliexpress_files import COUNTRIES, DATASET_PAGE, RawFile, find_raw_files

USER_COLUMNS = tuple(f"user_{i}" for i in range(1, 34))
ITEM_COLUMNS = tuple(f"item_{i}" for i in range(1, 50))
USER_CATEGORICAL = (*(f"user_{i}" for i in range(2, 9)), "user_32", "user_33")
ITEM_CATEGORICAL = tuple(f"item_{i}" for i in (19, 34, 35, 36, 40, 41, 42))
USER_NUMERICAL = tuple(f"user_{i}" for i in range(9, 32))
ITEM_NUMERICAL = tuple(f"item_{i}" for i in range(2, 49) if f"item_{i}" not in ITEM_CATEGORICAL)
LABEL = "item_49"



def _types(search_id: str, categorical: tuple[str, ...], numerical: tuple[str, ...], label: str | None = None) -> dict[str, pa.DataType]:
    types = {search_id: pa.int64()}
    types.update({name: pa.int64() for name in categorical})
    types.update({name: pa.float64() for name in numerical})
    if label is not None:
        types[label] = pa.int64()
    return types


USER_TYPES = _types("user_1", USER_CATEGORICAL, USER_NUMERICAL)
ITEM_TYPES = _types("item_1", ITEM_CATEGORICAL, ITEM_NUMERICAL, LABEL)


@dataclass
class SplitReport:
    """What converting one split did.

    Attributes:
        pages: user rows (search pages).
        items: item rows read.
        rows: processed rows written.
        orphans: item rows whose search id has no user row (dropped only with ``drop_orphans``).
        pages_without_items: user rows no item row refers to.
        clicks, conversions: label counts of the written rows.
        raw_bytes: uncompressed size of the two raw CSVs.
        seconds: wall time.
    """

    pages: int = 0
    items: int = 0
    rows: int = 0
    orphans: int = 0
    pages_without_items: int = 0
    clicks: int = 0
    conversions: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0


def _check_ids(name: str, data: pa.Table, columns: tuple[str, ...], first_line: int) -> None:
    """Categorical ids must fit the processed layout's int32 ids (the rule the built-in spec applies when it reads them)."""
    place = Place(name, first_line, lines=True)
    for column in columns:
        check_id_range(data.column(column).to_numpy(), place, column)


@dataclass(frozen=True)
class UserTable:
    """One split's user rows, sorted by search id for the join.

    Attributes:
        search_id: (U,) int64, ascending.
        columns: the other 32 user columns, in the same order as ``search_id``.
    """

    search_id: np.ndarray
    columns: pa.Table


def read_users(source: RawFile, *, chunk_bytes: int = CHUNK_BYTES) -> tuple[UserTable, int]:
    """The user file, checked and sorted by search id; and its uncompressed size in bytes."""
    pieces = []
    with source.open() as (stream, size), contextlib.closing(prefetch(line_pieces(stream, chunk_bytes=chunk_bytes))) as texts:
        for piece in texts:
            data = parse_piece(source.name, piece, USER_COLUMNS, USER_TYPES, text_numbers=USER_NUMERICAL)
            _check_ids(source.name, data, USER_CATEGORICAL, piece.first_line)
            pieces.append(data)
    if not pieces:
        raise DataError(source.name, f"the file is empty; expected rows of {len(USER_COLUMNS)} values")
    table = pa.concat_tables(pieces)
    del pieces
    search_id = table.column("user_1").to_numpy()
    order = np.argsort(search_id, kind="stable")
    search_id = search_id[order]
    repeated = np.flatnonzero(search_id[1:] == search_id[:-1])
    if len(repeated):
        first, second = sorted(int(order[i]) + 1 for i in (repeated[0], repeated[0] + 1))
        raise DataError(
            source.name,
            f"search id {search_id[repeated[0]]} has a second user row (the first is line {first}); a page has one user row",
            line=second,
            column="user_1",
        )
    columns = table.drop_columns(["user_1"]).take(pa.array(order)).combine_chunks()
    return UserTable(search_id, columns), size


class _Orphans:
    """Item rows whose search id has no user row: counted, the first one remembered."""

    def __init__(self) -> None:
        self.count = 0
        self.first_line = 0
        self.first_id = 0

    def add(self, missing: np.ndarray, search_id: np.ndarray, first_line: int) -> None:
        if missing.any() and self.count == 0:
            row = int(missing.argmax())
            self.first_line, self.first_id = first_line + row, int(search_id[row])
        self.count += int(missing.sum())


def _joined(users: UserTable, items: pa.Table, user_rows: np.ndarray, labels: np.ndarray) -> pa.Table:
    """Processed rows from matched item rows and the (n,) positions of their user rows."""
    page = users.columns.take(pa.array(user_rows))
    arrays = [items.column("item_1")]
    arrays += [page.column(name) for name in USER_CATEGORICAL]
    arrays += [items.column(name) for name in ITEM_CATEGORICAL]
    arrays += [page.column(name) for name in USER_NUMERICAL]
    arrays += [items.column(name) for name in ITEM_NUMERICAL]
    arrays += [pa.array((labels >= 1).astype(np.uint8)), pa.array((labels == 2).astype(np.uint8))]
    return pa.Table.from_arrays(arrays, names=list(COLUMNS))


class _BackgroundWriter:
    """Writes tables as headerless CSV on a worker thread, in order, at most ``depth`` pending.

    Arrow formats CSV without the GIL, so the next piece is parsed and joined meanwhile. Leaving
    the context waits for the pending writes; their errors are raised by ``write`` or on leaving.
    """

    def __init__(self, sink: pa.NativeFile, depth: int = 2):
        self._sink = sink
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtrec-csv")
        self._pending: deque[Future] = deque()
        self._writer: pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self._sink, table.schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._writer.write_table, table))

    def __enter__(self) -> _BackgroundWriter:
        return self

    def __exit__(self, error_type: type | None, *exc_info: object) -> None:
        try:
            while self._pending:
                write = self._pending.popleft()
                if error_type is None:
                    write.result()
                else:  # the error already raised is the one to report
                    write.exception()
            if self._writer is not None and error_type is None:
                self._writer.close()
        finally:
            self._pool.shutdown(wait=True)


def convert_split(
    users_file: RawFile,
    items_file: RawFile,
    output: Path,
    *,
    drop_orphans: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool = True,
) -> SplitReport:
    """Join ``items_file`` to ``users_file`` into ``output`` (processed layout), streaming.

    ``output`` is written as given: the caller writes to a temporary name and renames. Raises
    ``DataError`` for bad input; for item rows without a user row, after counting all of them,
    unless ``drop_orphans``.
    """
    start = time.perf_counter()
    users, user_bytes = read_users(users_file, chunk_bytes=chunk_bytes)
    report = SplitReport(pages=len(users.search_id), raw_bytes=user_bytes)
    referenced = np.zeros(len(users.search_id), dtype=bool)
    orphans = _Orphans()
    with contextlib.ExitStack() as stack:
        stream, size = stack.enter_context(items_file.open())
        pieces = stack.enter_context(contextlib.closing(prefetch(line_pieces(stream, chunk_bytes=chunk_bytes))))
        sink = stack.enter_context(pa.OSFile(str(output), "wb"))
        sink.write((",".join(COLUMNS) + "\n").encode())
        writer = stack.enter_context(_BackgroundWriter(sink))
        bar = stack.enter_context(
            tqdm(total=size, unit="B", unit_scale=True, desc=items_file.csv_name, disable=None if progress else True, leave=False)
        )
        report.raw_bytes += size
        for piece in pieces:
            items = parse_piece(items_file.name, piece, ITEM_COLUMNS, ITEM_TYPES, text_numbers=ITEM_NUMERICAL)
            _check_ids(items_file.name, items, ITEM_CATEGORICAL, piece.first_line)
            labels = items.column(LABEL).to_numpy()
            bad = (labels < 0) | (labels > 2)
            if bad.any():
                row = int(bad.argmax())
                raise DataError(
                    items_file.name,
                    f"expected a label 0 (nothing), 1 (click) or 2 (purchase), found {labels[row]}",
                    line=piece.first_line + row,
                    column=LABEL,
                )
            search_id = items.column("item_1").to_numpy()
            position = np.minimum(np.searchsorted(users.search_id, search_id), len(users.search_id) - 1)
            matched = users.search_id[position] == search_id
            orphans.add(~matched, search_id, piece.first_line)
            report.items += len(search_id)
            bar.update(piece.data.nbytes)
            if orphans.count and not drop_orphans:
                continue  # nothing more is written; the rest is read to count every orphan
            if not matched.all():
                items, position, labels = items.filter(pa.array(matched)), position[matched], labels[matched]
            referenced[position] = True
            writer.write(_joined(users, items, position, labels))
            report.rows += len(labels)
            report.clicks += int((labels >= 1).sum())
            report.conversions += int((labels == 2).sum())
    if report.items == 0:
        raise DataError(items_file.name, f"the file is empty; expected rows of {len(ITEM_COLUMNS)} values")
    report.orphans = orphans.count
    if orphans.count and not drop_orphans:
        raise DataError(
            items_file.name,
            f"{orphans.count:,} of {report.items:,} item rows have a search id with no row in {users_file.name} "
            f"(the first: search id {orphans.first_id}); nothing was written. --drop-orphans drops them "
            "(the original's inner join dropped them silently)",
            line=orphans.first_line,
            column="item_1",
        )
    report.pages_without_items = int((~referenced).sum())
    report.seconds = time.perf_counter() - start
    return report


def preprocess(
    data_dir: str | Path,
    dataset: str,
    *,
    drop_orphans: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool = True,
) -> dict[str, SplitReport]:
    """Convert the raw download of ``dataset`` under ``data_dir`` to ``data_dir/<dataset>/{train,test}.csv``.

    Both files are written to temporary names and renamed only when both are complete, so a
    failure leaves no output (and any earlier ``train.csv``/``test.csv`` untouched).
    """
    files = find_raw_files(data_dir, dataset)
    folder = Path(data_dir) / dataset
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {split: folder / f"{split}.csv" for split in ("train", "test")}
    temporaries = {split: path.with_name(f"{path.name}.tmp-{os.getpid()}") for split, path in outputs.items()}
    reports = {}
    try:
        for split in ("train", "test"):
            reports[split] = convert_split(
                files[f"user_{split}"],
                files[f"item_{split}"],
                temporaries[split],
                drop_orphans=drop_orphans,
                chunk_bytes=chunk_bytes,
                progress=progress,
            )
        for split in ("train", "test"):
            os.replace(temporaries[split], outputs[split])
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()
    return reports


@register_recipe(tuple(f"AliExpress_{country}" for country in COUNTRIES), DATASET_PAGE, options=("drop_orphans",))
def run(data_dir: Path, name: str, *, progress: bool = True, drop_orphans: bool = False) -> list[str]:
    """The recipe: convert, then one line per split."""
    lines = []
    for split, r in preprocess(data_dir, name, drop_orphans=drop_orphans, progress=progress).items():
        line = (
            f"{split}: {r.rows:,} rows from {r.items:,} item rows on {r.pages:,} pages, {r.clicks:,} clicks, "
            f"{r.conversions:,} conversions; {r.raw_bytes / 1e6:,.0f} MB of CSV in {r.seconds:.1f} s "
            f"({r.items / r.seconds:,.0f} rows/s)"
        )
        if r.orphans:
            line += f"; dropped {r.orphans:,} item rows whose search id has no user row"
        if r.pages_without_items:
            line += f"; {r.pages_without_items:,} pages have no item rows"
        lines.append(line)
    lines.append(f"wrote {data_dir}/{name}/train.csv and test.csv (the AliExpress processed layout)")
    return lines
