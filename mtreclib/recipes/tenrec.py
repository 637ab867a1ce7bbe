"""Tenrec (Tencent's feeds, the STEM paper's QK-Video) to Parquet and a dataset spec.

Yuan et al., "Tenrec: A Large-scale Multipurpose Benchmark Dataset for Recommender Systems",
NeurIPS 2022 Datasets and Benchmarks (https://github.com/yuangh-x/2022-NIPS-Tenrec; CC BY-NC 4.0,
downloaded after accepting the licence at https://static.qblv.qq.com/qblv/h5/algo-frontend/tenrec_dataset.html).
``mtrec preprocess --dataset Tenrec [--file FILE]`` reads one of the publisher's CSVs from
``DIR/Tenrec/`` or ``DIR`` (or inside ``Tenrec.zip`` there):

- ``QK-video.csv`` (the default; 14 GB) and ``QB-video.csv`` (a smaller app, 74 MB): the header
  ``user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age``, one impression a line, missing values written ``\\N``;
- ``ctr_data_1M.csv``: the publisher's CTR and multi-task subset of QK-video (~1M users, 120M
  rows; the "QK-Video" of the STEM paper, AAAI 2024), the same columns and ``hist_1 .. hist_10``:
  the user's first clicked videos (the first ten; with ten or fewer, all but the last), ``0``
  padding a shorter history (the publisher's ``gen_ctr.py``), the same on every row of a user.

What is written (``DIR/Tenrec/``), one row per raw line, in file order:

- ``<FILE>.parquet``: ``user_id``, ``item_id`` (int64, never missing); ``video_category``, ``gender``,
  ``age`` (int64, null for ``\\N``); for ``ctr_data_1M.csv``, ``hist`` (list<int64>: hist_1 .. hist_10
  in order, without the ``0`` padding and missing values); the four tasks ``click``, ``follow``,
  ``like``, ``share`` (int8 0/1); ``watching_times`` (int64, null for ``\\N``): how often the user
  entered the video, known only after the impression and bound up with the click, so not a
  feature (the publisher leaves it out of its CTR benchmark for that reason), but an optional
  regression task of the spec (``--tasks click,watching_times``);
- ``<FILE>.yaml`` and ``dataset.yaml`` (the file converted last, what ``--dataset Tenrec`` trains):
  the spec. The publisher's files have no time column and no split: the spec splits the rows at
  random, 80 / 10 / 10 (``split: {method: random, valid: 0.1, test: 0.1, seed: 0}``: a row's split
  depends on its position and the seed alone), the shares of the publisher's multi-task
  benchmark (``utils.mtl_data``: shuffle, 80% train, the rest halved), which STEM's reported
  QK-Video sizes (95.9M / 12.0M / 12.5M of ctr_data_1M's 120.3M rows) follow too.

No ``implies``: the publisher says a like, follow or share may come without a click (a click is
a play past a share of the video's length). Bad input (a header that is not the publisher's, a
value that is not an integer or ``\\N``, a label other than 0 or 1) stops with one line naming
the file, line and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.settings import setting
from mtreclib.recipes.kit import Output, Place, RawFile, Recipe, RecipeConfig, binary, expect, integers, locate, read_pieces, register_recipe

PAGE = "https://static.qblv.qq.com/qblv/h5/algo-frontend/tenrec_dataset.html"
FILES = ("QK-video.csv", "QB-video.csv", "ctr_data_1M.csv")
ZIP_NAME = "Tenrec.zip"
MISSING = "\\N"
IDS = ("user_id", "item_id")
LABELS = ("click", "follow", "like", "share")
# How often the user entered the video, as an optional regression task (by --tasks, never by
# default), log1p-transformed; a missing count (``\N``) is taken as 0, no entry.
WATCHING_TIMES = {"name": "watching_times", "type": "regression", "transform": "log1p", "fill": 0}
FEATURES = ("video_category", "gender", "age")  # may be \N
HISTORY = tuple(f"hist_{i}" for i in range(1, 11))
COLUMNS = ("user_id", "item_id", "click", "follow", "like", "share", "video_category", "watching_times", "gender", "age")
SPLIT_SEED = 0


def columns_of(file: str) -> tuple[str, ...]:
    """The header of ``file``."""
    return COLUMNS + (HISTORY if file == "ctr_data_1M.csv" else ())


def schema_of(file: str) -> pa.Schema:
    fields = [pa.field(name, pa.int64(), nullable=False) for name in IDS]
    fields += [pa.field(name, pa.int64()) for name in FEATURES]
    if file == "ctr_data_1M.csv":
        fields.append(pa.field("hist", pa.list_(pa.int64()), nullable=False))
    fields += [pa.field(name, pa.int8(), nullable=False) for name in LABELS]
    fields.append(pa.field("watching_times", pa.int64()))
    return pa.schema(fields)


def convert_rows(name: str, raw: pa.Table, first_line: int, schema: pa.Schema) -> pa.Table:
    """Parsed raw lines (the first on ``first_line``) as rows of ``schema``; ``DataError`` at the first bad value."""
    arrays: dict[str, pa.Array] = {column: raw.column(column) for column in IDS}
    for column in (*FEATURES, "watching_times"):
        arrays[column] = integers(raw.column(column), name, first_line, column, missing=(MISSING,))
    times = arrays["watching_times"]
    expect(pc.fill_null(pc.less(times, 0), False).to_numpy(zero_copy_only=False), times, name, first_line, "watching_times", "a count >= 0")
    for column in LABELS:
        values = raw.column(column).to_numpy()
        binary(values, name, first_line, column)
        arrays[column] = pa.array(values.astype(np.int8))
    if "hist" in schema.names:
        history = np.stack([pc.fill_null(integers(raw.column(c), name, first_line, c, missing=(MISSING,)), 0).to_numpy() for c in HISTORY], axis=1)
        kept = history != 0  # (n, 10): 0 pads a history shorter than ten
        offsets = np.concatenate([[0], np.cumsum(kept.sum(axis=1))]).astype(np.int32)
        arrays["hist"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(history[kept]))  # row-major: each row's items in order
    return pa.Table.from_arrays([arrays[field.name] for field in schema], schema=schema)


def spec(name: str, file: str) -> dict:
    """The spec (docs/dataset-spec.md) of ``<file stem>.parquet``."""
    categorical = [
        {"name": "user_id", "role": "user"},
        {"name": "item_id", "role": "item"},
        {"name": "video_category", "role": "item"},
        {"name": "gender", "role": "user"},
        {"name": "age", "role": "user"},
    ]
    multi = [{"name": "hist", "pooling": "mean", "role": "user"}] if file == "ctr_data_1M.csv" else []
    return {
        "name": name,
        "format": "parquet",
        "source": f"{Path(file).stem}.parquet",
        "split": {"method": "random", "valid": 0.1, "test": 0.1, "seed": SPLIT_SEED},
        "categorical": categorical,
        **({"multi_valued": multi} if multi else {}),
        "numerical": [],
        "labels": [*LABELS, WATCHING_TIMES],
        "tasks": list(LABELS),
        "group": "user_id",
    }


@dataclass(frozen=True)
class TenrecConfig(RecipeConfig):
    file: str = setting(FILES[0], "which of the publisher's files to convert", choices=FILES)


@register_recipe
class Tenrec(Recipe):
    """One of Tenrec's files to Parquet rows and a spec with a seeded random split (see the module docstring)."""

    names = ("Tenrec",)
    page = PAGE
    title = "Tenrec (Yuan et al., NeurIPS 2022 Datasets and Benchmarks; CC BY-NC 4.0)"
    labels = LABELS
    Config = TenrecConfig

    def find(self) -> RawFile:
        file = self.config.file
        folders = [self.data_dir / self.name, self.data_dir]
        places = [Place(folder / file) for folder in folders] + [Place(folder / ZIP_NAME, ((file,),)) for folder in folders]
        missing = f"download it from {PAGE} (after accepting the licence) into {self.data_dir / self.name}/ (see docs/recipes/tenrec.md)"
        return locate(file, places, missing=missing, hint=f"is the download complete? Download it again from {PAGE}")

    def convert(self, raw: RawFile, output: Output) -> None:
        file = self.config.file
        schema, stem = schema_of(file), Path(file).stem
        output.parquet(stem, schema)
        types = {column: pa.int64() if column in (*IDS, *LABELS) else pa.string() for column in columns_of(file)}
        nullable = [column for column, kind in types.items() if kind == pa.string()]
        with raw.open() as opened:
            pieces = read_pieces(
                opened, columns_of(file), types, report=output.report, header=True, chunk_bytes=self.config.chunk_bytes,
                progress=self.progress, nullable=nullable,
            )  # fmt: skip
            for piece, table in pieces:
                output.write(stem, convert_rows(opened.name, table, piece.first_line, schema))
        output.report.notes.append(f"split at training time by the spec: 80/10/10 at random, seed {SPLIT_SEED}")

    def specs(self, raw: RawFile) -> dict[str, tuple[dict, str]]:
        file = self.config.file
        note = (
            f"Rows of {file}; split at random 80/10/10 (seed {SPLIT_SEED}) when the cache is built; see docs/recipes/tenrec.md.\n"
            "watching_times is kept but is no feature: it is known only after the impression."
        )
        stem = Path(file).stem
        return {f"{stem}.yaml": (spec(f"{self.name}-{stem}", file), note), "dataset.yaml": (spec(self.name, file), note)}
