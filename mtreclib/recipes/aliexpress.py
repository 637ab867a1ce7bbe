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

The download: Tianchi's ``aliexpress_<CC>_datasets.zip`` holds a folder ``aliexpress_<CC>_datasets/``
with four zips (``<cc>_user_train.zip``, ``<cc>_item_train.zip``, ``<cc>_user_test.zip``,
``<cc>_item_test.zip``), each holding one headerless CSV of the same name. A user may have the
outer zip, the inner zips (the outer one unpacked) or the CSVs (everything unpacked); each file is
read from whichever form is there, straight out of the zips.

Memory: one split's user table is held (sorted by search id, about 300 bytes a page); item rows
go through in pieces of ``CHUNK_BYTES`` of text, so memory does not grow with the item count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from mtreclib.core.errors import DataError, UserError
from mtreclib.core.settings import setting
from mtreclib.data.csvchunks import CHUNK_BYTES
from mtreclib.data.encoding import Place as IdPlace
from mtreclib.data.encoding import check_id_range
from mtreclib.data.processed import COLUMNS
from mtreclib.recipes.kit import (
    Output,
    Place,
    RawFile,
    Recipe,
    RecipeConfig,
    Tally,
    distinct_lines,
    expect,
    locate,
    read_pieces,
    register_recipe,
    run_recipe,
)

COUNTRIES = ("NL", "ES", "FR", "US", "RU")
KINDS = ("user_train", "item_train", "user_test", "item_test")
DATASET_PAGE = "https://tianchi.aliyun.com/dataset/dataDetail?dataId=74690"

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


def country_of(dataset: str) -> str:
    """``AliExpress_NL`` -> ``NL``; other names are a user error."""
    match = re.fullmatch(r"AliExpress_([A-Za-z]{2})", dataset)
    if match is None or match.group(1).upper() not in COUNTRIES:
        choices = ", ".join(f"AliExpress_{c}" for c in COUNTRIES)
        raise UserError(f"unknown AliExpress dataset {dataset!r}; expected one of {choices}")
    return match.group(1).upper()


def outer_zip_name(country: str) -> str:
    return f"aliexpress_{country}_datasets.zip"


def _check_ids(name: str, data: pa.Table, columns: tuple[str, ...], first_line: int) -> None:
    """Categorical ids must fit the processed layout's int32 ids (the rule the built-in spec applies when it reads them)."""
    place = IdPlace(name, first_line, lines=True)
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


def read_users(source: RawFile, *, chunk_bytes: int = CHUNK_BYTES, progress: bool = True, report: object = None) -> UserTable:
    """The user file, checked and sorted by search id."""
    pieces = []
    with source.open() as file:
        for piece, data in read_pieces(file, USER_COLUMNS, USER_TYPES, report=report, chunk_bytes=chunk_bytes, progress=progress, text_numbers=USER_NUMERICAL):
            _check_ids(file.name, data, USER_CATEGORICAL, piece.first_line)
            pieces.append(data)
    table = pa.concat_tables(pieces)
    del pieces
    ids = table.column("user_1").to_numpy()
    order, search_id = distinct_lines(ids, source.name, "user_1", lambda key: f"search id {key}", "user row", "a page has one user row")
    columns = table.drop_columns(["user_1"]).take(pa.array(order)).combine_chunks()
    return UserTable(search_id, columns)


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


@dataclass(frozen=True)
class AliExpressConfig(RecipeConfig):
    drop_orphans: bool = setting(
        False, "drop item rows whose search id has no user row, and report how many (default: stop with an error)"
    )


@register_recipe
class AliExpress(Recipe):
    """The AliExpress download of one country to the original MTReclib's processed layout (see the module docstring)."""

    names = tuple(f"AliExpress_{country}" for country in COUNTRIES)
    page = DATASET_PAGE
    title = "AliExpress (Tianchi 74690) in the original MTReclib's processed layout"
    labels = ("click", "conversion")
    Config = AliExpressConfig

    def find(self) -> dict[str, RawFile]:
        """The four raw files by kind: each as a CSV, then its zip, in ``DIR/<dataset>/`` and
        ``DIR/aliexpress_<CC>_datasets/``; then inside ``aliexpress_<CC>_datasets.zip`` in ``DIR`` or ``DIR/<dataset>/``."""
        country = country_of(self.name)
        outer = outer_zip_name(country)
        folders = [self.data_dir / self.name, self.data_dir / f"aliexpress_{country}_datasets"]
        hint = f"is the download complete? Compare its md5 with md5.txt on {DATASET_PAGE}"
        found = {}
        for kind in KINDS:
            stem = f"{country.lower()}_{kind}"
            places = [Place(folder / f"{stem}.csv") for folder in folders]
            places += [Place(folder / f"{stem}.zip", ((f"{stem}.csv",),)) for folder in folders]
            places += [Place(path, ((f"{stem}.zip", f"{stem}.csv"),)) for path in (self.data_dir / outer, self.data_dir / self.name / outer)]
            missing = f"download {outer} from {DATASET_PAGE} into {self.data_dir}/ (see the README, 'Data')"
            found[kind] = locate(f"{stem}.csv", places, missing=missing, hint=hint)
        return found

    def convert(self, files: dict[str, RawFile], output: Output) -> None:
        for split in ("train", "test"):
            output.csv(split, ",".join(COLUMNS))
        for split in ("train", "test"):
            self._convert_split(files[f"user_{split}"], files[f"item_{split}"], output, split)

    def _convert_split(self, users_file: RawFile, items_file: RawFile, output: Output, split: str) -> None:
        """Join ``items_file`` to ``users_file`` into output ``split``, streaming. Item rows without a user
        row are an error after all are counted, unless ``drop_orphans``."""
        chunk_bytes = self.config.chunk_bytes
        users = read_users(users_file, chunk_bytes=chunk_bytes, progress=self.progress, report=output.report)
        tally = output.report.tally(split)
        referenced = np.zeros(len(users.search_id), dtype=bool)
        orphans = _Orphans()
        items_read = 0
        with items_file.open() as file:
            for piece, items in read_pieces(
                file, ITEM_COLUMNS, ITEM_TYPES, report=output.report, chunk_bytes=chunk_bytes, progress=self.progress, text_numbers=ITEM_NUMERICAL
            ):
                _check_ids(file.name, items, ITEM_CATEGORICAL, piece.first_line)
                labels = items.column(LABEL).to_numpy()
                expect((labels < 0) | (labels > 2), labels, file.name, piece.first_line, LABEL, "a label 0 (nothing), 1 (click) or 2 (purchase)")
                search_id = items.column("item_1").to_numpy()
                position = np.minimum(np.searchsorted(users.search_id, search_id), len(users.search_id) - 1)
                matched = users.search_id[position] == search_id
                orphans.add(~matched, search_id, piece.first_line)
                items_read += len(search_id)
                if orphans.count and not self.config.drop_orphans:
                    continue  # nothing more is written; the rest is read to count every orphan
                if not matched.all():
                    items, position, labels = items.filter(pa.array(matched)), position[matched], labels[matched]
                referenced[position] = True
                output.write(split, _joined(users, items, position, labels))
        if orphans.count and not self.config.drop_orphans:
            raise DataError(
                items_file.name,
                f"{orphans.count:,} of {items_read:,} item rows have a search id with no row in {users_file.name} "
                f"(the first: search id {orphans.first_id}); nothing was written. --drop-orphans drops them "
                "(the original's inner join dropped them silently)",
                line=orphans.first_line,
                column="item_1",
            )
        pages, without_items = len(users.search_id), int((~referenced).sum())
        for key, count in (("pages", pages), ("items", items_read), ("orphans", orphans.count), ("pages_without_items", without_items)):
            tally.count(key, count)
        tally.details.append(f"from {items_read:,} item rows on {pages:,} pages")
        if orphans.count:
            tally.details.append(f"dropped {orphans.count:,} item rows whose search id has no user row")
        if without_items:
            tally.details.append(f"{without_items:,} pages have no item rows")

    def specs(self, files: dict[str, RawFile]) -> dict[str, tuple[dict, str]]:
        return {}  # the processed layout is read through the built-in spec (data/builtin.py)

    def sources(self, files: dict[str, RawFile]) -> list[str]:
        return [file.name for file in files.values()]


def preprocess(
    data_dir: str | Path, dataset: str, *, drop_orphans: bool = False, chunk_bytes: int = CHUNK_BYTES, progress: bool = True
) -> dict[str, SimpleNamespace]:
    """Convert the raw download of ``dataset`` under ``data_dir`` to ``data_dir/<dataset>/{train,test}.csv``;
    per split, the counts by name (``rows``, ``clicks``, ``conversions``, ``pages``, ``items``, ``orphans``,
    ``pages_without_items``), for scripts."""
    country_of(dataset)  # an unknown country is named as such
    report = run_recipe(dataset, data_dir, progress=progress, drop_orphans=drop_orphans, chunk_bytes=chunk_bytes)
    return {split: _counts(tally) for split, tally in report.outputs.items()}


def _counts(tally: Tally) -> SimpleNamespace:
    return SimpleNamespace(rows=tally.rows, clicks=tally.positives.get("click", 0), conversions=tally.positives.get("conversion", 0), **tally.counts)
