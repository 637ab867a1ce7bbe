"""Small (or large) files in the layout of the raw AliExpress download, for tests and benchmarks.

The values are random, not a model of the real data; what matches the download is the layout:
headerless CSVs of 33 user and 49 item columns, integer ids in the categorical columns,
six-decimal numbers with many zeros elsewhere (a few integer-valued), labels 0/1/2, search pages
of several items, and the same zips inside a zip. User rows come in a different order than the
item rows' pages, and the test split has ids the training split never uses, so the join and the
vocabulary rule are both exercised.
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mtreclib.recipes.aliexpress import ITEM_CATEGORICAL, ITEM_COLUMNS, KINDS, LABEL, USER_CATEGORICAL, USER_COLUMNS, outer_zip_name

# Vocabulary sizes of the categorical columns (the test split draws from 10% more).
_USER_VOCAB = (10, 3, 4, 5, 50, 20, 100, 2, 7)
_ITEM_VOCAB = (200, 5000, 10, 30, 3, 8, 1000)
_INTEGER_NUMERICAL = ("user_9", "item_2", "item_3", "item_47")
LAYOUTS = ("outer", "inner", "csv")


@dataclass(frozen=True)
class RawConfig:
    """What to generate.

    Attributes:
        country: NL, ES, FR, US or RU (file names only).
        train_items, test_items: item rows (impressions) per split.
        items_per_page: mean items of one search page.
        seed: the data's seed.
        block_pages: pages generated at a time (memory of the generator).
    """

    country: str = "NL"
    train_items: int = 2000
    test_items: int = 500
    items_per_page: float = 12.0
    seed: int = 0
    block_pages: int = 20_000


def _integer_columns(columns: tuple[str, ...]) -> set[str]:
    return {columns[0], *USER_CATEGORICAL, *ITEM_CATEGORICAL, LABEL, *_INTEGER_NUMERICAL} & set(columns)


def _fill(rng: np.random.Generator, rows: int, columns: tuple[str, ...], vocab: dict[str, int]) -> np.ndarray:
    """(rows, len(columns)) float64 values; column 0 (the search id) is left for the caller."""
    out = np.round(rng.random((rows, len(columns))), 6)
    out[rng.random(out.shape) < 0.4] = 0.0  # zero-inflated, as the real features are
    for j, name in enumerate(columns):
        if name in vocab:
            out[:, j] = rng.integers(0, vocab[name], rows)
        elif name in _INTEGER_NUMERICAL:
            out[:, j] = rng.integers(0, 4, rows)
    return out


def split_blocks(config: RawConfig, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(users (U, 33), items (I, 49)) float64 blocks of ``split`` ("train" or "test"), in file order."""
    items_total = config.train_items if split == "train" else config.test_items
    rng = np.random.default_rng([config.seed, 0 if split == "train" else 1])
    scale = 1.0 if split == "train" else 1.1
    user_vocab = {name: int(size * scale) for name, size in zip(USER_CATEGORICAL, _USER_VOCAB)}
    item_vocab = {name: int(size * scale) for name, size in zip(ITEM_CATEGORICAL, _ITEM_VOCAB)}
    next_id = 1_000_000 if split == "train" else 900_000_000
    done = 0
    while done < items_total:
        sizes = 1 + rng.poisson(config.items_per_page - 1, config.block_pages)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), items_total - done) + 1]
        sizes[-1] -= max(0, int(sizes.sum()) - (items_total - done))
        search_id = next_id + np.cumsum(rng.integers(1, 4, len(sizes)))  # unique, with gaps
        next_id = int(search_id[-1])
        users = _fill(rng, len(sizes), USER_COLUMNS, user_vocab)
        users[:, 0] = search_id
        items = _fill(rng, int(sizes.sum()), ITEM_COLUMNS, item_vocab)
        items[:, 0] = np.repeat(search_id, sizes)
        items[:, -1] = rng.choice(3, len(items), p=[0.85, 0.12, 0.03])
        done += len(items)
        yield users[rng.permutation(len(users))], items


def csv_bytes(rows: np.ndarray, columns: tuple[str, ...]) -> bytes:
    """Headerless CSV text of ``rows``, integer columns written as integers."""
    integer = _integer_columns(columns)
    arrays = [pa.array(rows[:, j].astype(np.int64) if name in integer else rows[:, j]) for j, name in enumerate(columns)]
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_arrays(arrays, names=list(columns)), sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue().to_pybytes()


def raw_arrays(config: RawConfig) -> dict[str, np.ndarray]:
    """The four files' rows in memory, by kind (``user_train`` ...): for small configs and tests."""
    out = {}
    for split in ("train", "test"):
        blocks = list(split_blocks(config, split))
        out[f"user_{split}"] = np.concatenate([users for users, _ in blocks])
        out[f"item_{split}"] = np.concatenate([items for _, items in blocks])
    return out


def columns_of(kind: str) -> tuple[str, ...]:
    return USER_COLUMNS if kind.startswith("user") else ITEM_COLUMNS


def _folder(data_dir: Path, country: str, layout: str) -> Path:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    folder = data_dir / (f"AliExpress_{country}" if layout == "csv" else f"aliexpress_{country}_datasets")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _csv_sink(folder: Path, stem: str, layout: str, compresslevel: int | None) -> Iterator[BinaryIO]:
    """Where ``<stem>.csv`` is written: a file, or the one member of ``<stem>.zip``."""
    if layout == "csv":
        with open(folder / f"{stem}.csv", "wb") as handle:
            yield handle
        return
    with zipfile.ZipFile(folder / f"{stem}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        with archive.open(f"{stem}.csv", "w", force_zip64=True) as member:
            yield member


def _finish(data_dir: Path, country: str, folder: Path, layout: str, outer_compression: int, compresslevel: int | None) -> Path:
    """Pack the inner zips into the outer one for the ``"outer"`` layout."""
    if layout != "outer":
        return folder
    outer = data_dir / outer_zip_name(country)
    with zipfile.ZipFile(outer, "w", outer_compression, compresslevel=compresslevel) as archive:
        for kind in KINDS:
            stem = f"{country.lower()}_{kind}"
            archive.write(folder / f"{stem}.zip", f"{folder.name}/{stem}.zip")
    shutil.rmtree(folder)
    return outer


def write_download(
    data_dir: str | Path,
    country: str,
    files: dict[str, bytes],
    *,
    layout: str = "outer",
    outer_compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Lay out the four CSVs (text by kind: ``user_train`` ...) as the download has them.

    ``layout``: ``"outer"`` -> ``data_dir/aliexpress_<CC>_datasets.zip`` holding
    ``aliexpress_<CC>_datasets/<cc>_<kind>.zip``; ``"inner"`` -> those four zips in
    ``data_dir/aliexpress_<CC>_datasets/``; ``"csv"`` -> the CSVs in ``data_dir/AliExpress_<CC>/``.
    Returns the outer zip, the folder of inner zips or the folder of CSVs.
    """
    data_dir = Path(data_dir)
    folder = _folder(data_dir, country, layout)
    for kind in KINDS:
        with _csv_sink(folder, f"{country.lower()}_{kind}", layout, None) as sink:
            sink.write(files[kind])
    return _finish(data_dir, country, folder, layout, outer_compression, None)


def generate_download(
    data_dir: str | Path,
    config: RawConfig,
    *,
    layout: str = "outer",
    outer_compression: int = zipfile.ZIP_DEFLATED,
    compresslevel: int | None = None,
) -> Path:
    """Generate ``config``'s data straight into the download's layout, in bounded memory."""
    data_dir = Path(data_dir)
    folder = _folder(data_dir, config.country, layout)
    cc = config.country.lower()
    for split in ("train", "test"):
        with _csv_sink(folder, f"{cc}_user_{split}", layout, compresslevel) as user_sink, _csv_sink(
            folder, f"{cc}_item_{split}", layout, compresslevel
        ) as item_sink:
            for users, items in split_blocks(config, split):
                user_sink.write(csv_bytes(users, USER_COLUMNS))
                item_sink.write(csv_bytes(items, ITEM_COLUMNS))
    return _finish(data_dir, config.country, folder, layout, outer_compression, compresslevel)
