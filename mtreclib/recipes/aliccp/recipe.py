"""Ali-CCP (Alibaba Click and Conversion Prediction, the ESMM paper's data) to Parquet and a dataset spec.

Ma et al., "Entire Space Multi-Task Model", SIGIR 2018; https://tianchi.aliyun.com/dataset/408.
``mtrec preprocess --dataset AliCCP`` reads ``sample_train.tar.gz`` and ``sample_test.tar.gz``
(or the CSVs they hold) and writes, per split, ``AliCCP/<split>.parquet`` (the impressions) and
``AliCCP/common_<split>.parquet`` (the side table of user histories), and ``AliCCP/dataset.yaml``
(``dataset_spec``). One row per skeleton line (an impression), in file order:

- ``sample_id``: the line's sample id; ``common_feature_index``: its common-features index, the
  16 hex digits read as a 64-bit number (int64, two's complement): the spec's ``group``, and the
  key of the side table;
- ``click``, ``conversion``: int8 0/1. A conversion without a click (click 0, conversion 1) is
  left out and counted by default, as torch-rechub's and the AITM authors' preprocessing leave
  such lines out, so that conversion implies click (the spec says so) and the conversion task
  over all impressions is the ESMM paper's CTCVR; ``unclicked_conversions="keep"`` writes them
  as labelled, as the ESMM authors' x-deeplearning sample generator does (the spec then
  declares no ``implies`` if any was kept), and ``"stop"`` stops at the first;
- the fields of the paper (features.FIELDS) but the user histories, named by their field
  ids: a single-valued field (101, 121..129 from the line's common-features line; 205, 206, 207,
  216, 301) as an int64 feature id, null where the line lacks it; a multi-valued field (210,
  508, 509, 702, 853) as a list of int64 feature ids with every feature kept, in the order of the
  line, and a parallel list of their float32 values in ``<field>_weight``; empty where the line
  lacks the field.

One row of ``common_<split>.parquet`` per common-features line that a written impression refers
to, in file order: ``common_feature_index`` and the user histories 109_14, 110_14, 127_14,
150_14 as lists (with ``<field>_weight``) like the multi-valued fields above. Lines no
impression refers to are left out (and counted): a side-table row is counted once in the
vocabularies, so a user without impressions in the split would otherwise add their features.

The download: Tianchi serves ``sample_train.tar.gz`` (holding ``sample_skeleton_train.csv`` and
``common_features_train.csv``) and ``sample_test.tar.gz`` (the same for ``test``); each CSV is
read from its file, in ``DIR/AliCCP/`` or ``DIR``, or else streamed out of its archive. A gzip
stream cannot seek, so reading the skeleton after the common features opens the archive a
second time.

Memory: a split's common-features lines are held as their indexes and profile ids only
(common.py: ~105 bytes a line, ~80 MB at full size) while the histories stream to the side
table; skeleton lines go through in pieces of ``PIECE_BYTES`` (8 MB) of text, gathered into
row groups of ~64 MB, so memory does not grow with the number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mtreclib.core.errors import DataError
from mtreclib.core.settings import setting
from mtreclib.data.csvchunks import Dialect
from mtreclib.recipes.aliccp.common import HISTORIES, PIECE_BYTES, SIDE_SCHEMA, CommonTable, list_columns, read_common
from mtreclib.recipes.aliccp.features import FIELDS, SAMPLE, Field, FieldValues, parse_features, parse_keys, weight_column
from mtreclib.recipes.kit import Output, Place, RawFile, Recipe, RecipeConfig, expect, locate, read_pieces, register_recipe

DATASET_PAGE = "https://tianchi.aliyun.com/dataset/408"
SPLITS = ("train", "test")
TABLE = "common"
KEY = "common_feature_index"
SKELETON_COLUMNS = ("sample_id", "click", "conversion", KEY, "feature_count", "feature_list")
SKELETON_TYPES = {
    "sample_id": pa.int64(),
    "click": pa.int64(),
    "conversion": pa.int64(),
    KEY: pa.string(),
    "feature_count": pa.int64(),
    "feature_list": pa.string(),
}
DIALECT = Dialect(",", quoted=False)
UNCLICKED = ("drop", "keep", "stop")  # what to do with a conversion without a click
# The fields on the impression rows: all but the user histories, which live in the side table.
ROW_FIELDS = tuple(field for field in FIELDS if field not in HISTORIES)


def skeleton_name(split: str) -> str:
    return f"sample_skeleton_{split}.csv"


def common_name(split: str) -> str:
    return f"common_features_{split}.csv"


def archive_name(split: str) -> str:
    return f"sample_{split}.tar.gz"


def table_name(split: str) -> str:
    """The side table's output of ``split`` (``common_train``, written as ``common_train.parquet``)."""
    return f"{TABLE}_{split}"


def rows_schema() -> pa.Schema:
    """The columns of ``<split>.parquet``, in order."""
    columns = [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field(KEY, pa.int64(), nullable=False),
        pa.field("click", pa.int8(), nullable=False),
        pa.field("conversion", pa.int8(), nullable=False),
    ]
    for field in ROW_FIELDS:
        if field.multi:
            columns.append(pa.field(field.name, pa.list_(pa.int64()), nullable=False))
            columns.append(pa.field(weight_column(field), pa.list_(pa.float32()), nullable=False))
        else:
            columns.append(pa.field(field.name, pa.int64()))
    return pa.schema(columns)


ROWS_SCHEMA = rows_schema()


def dataset_spec(name: str, *, implies: bool = True) -> dict:
    """The ``dataset.yaml`` content (docs/dataset-spec.md) for the files this recipe writes;
    ``implies``: declare that conversion implies click (false once a conversion without a click is kept)."""

    def bag(field: Field) -> dict:
        # Sum of the features' embeddings weighted by their values (log counts; 1 for 210), as
        # the ESMM authors' x-deeplearning model pools every field.
        table = {"table": TABLE} if field in HISTORIES else {}
        return {"name": field.name, **table, "weights": weight_column(field), "pooling": "sum", "role": field.role}

    return {
        "name": name,
        "format": "parquet",
        "train": "train.parquet",
        "test": "test.parquet",
        "tables": {TABLE: {"key": KEY, **{split: f"{table_name(split)}.parquet" for split in SPLITS}}},
        "categorical": [{"name": f.name, "role": f.role} for f in FIELDS if not f.multi],
        "multi_valued": [bag(f) for f in FIELDS if f.multi],
        "numerical": [],
        "labels": ["click", "conversion"],
        **({"implies": {"conversion": "click"}} if implies else {}),
        "group": KEY,
    }


_SPEC_NOTES = """\
Columns are named by the paper's field ids; see docs/recipes/aliccp.md.
The user histories (109_14, 110_14, 127_14, 150_14) are stored once per common-features line
in the side table `common`, joined to each impression by its common_feature_index.
There is no validation file: `mtrec train` holds out --valid-fraction of train.
conversion implies click, so the conversion task over all impressions is CTCVR.
"""
_KEPT_NOTES = _SPEC_NOTES.replace(
    "conversion implies click, so the conversion task over all impressions is CTCVR.",
    "Conversions without a click were kept as labelled (--unclicked-conversions keep): no implies is declared.",
)


def _columns(field: Field, values: FieldValues) -> list[pa.Array]:
    """The output column(s) of one field over n lines."""
    if not field.multi:
        present = values.counts > 0
        ids = np.zeros(len(present), dtype=np.int64)
        ids[present] = values.ids
        return [pa.array(ids, mask=~present)]
    return list_columns(values)


def _unclicked(path: str, first_line: int, click: np.ndarray, conversion: np.ndarray, *, policy: str) -> np.ndarray:
    """(n,) the lines that are a conversion without a click; under ``policy`` ``stop`` the first is an
    error. Labels are checked first."""
    for column, labels in (("click", click), ("conversion", conversion)):
        expect((labels != 0) & (labels != 1), labels, path, first_line, column, "a label 0 or 1")
    unclicked = (conversion == 1) & (click == 0)
    if unclicked.any() and policy == "stop":
        raise DataError(
            path,
            "a conversion without a click (--unclicked-conversions stop); --unclicked-conversions drop leaves such lines "
            "out (as torch-rechub and AITM's code do), keep writes them as labelled (as x-deeplearning does)",
            line=first_line + int(unclicked.argmax()),
            column="conversion",
        )
    return unclicked


def _rows(
    users: CommonTable,
    rows: np.ndarray,
    items: dict[str, FieldValues],
    sample_id: np.ndarray,
    keys: np.ndarray,
    click: np.ndarray,
    conversion: np.ndarray,
) -> pa.Table:
    """Output rows of a piece's n lines, each joined to the profile of its common line ``rows[i]``.

    ``items`` holds the lines' own fields; ``sample_id``, ``keys``, ``click`` and ``conversion`` are (n,).
    """
    profile = users.take(rows)
    arrays = [pa.array(sample_id), pa.array(keys.view(np.int64)), pa.array(click.astype(np.int8)), pa.array(conversion.astype(np.int8))]
    for field in ROW_FIELDS:
        arrays += _columns(field, profile[field.name] if field.name in profile else items[field.name])
    return pa.Table.from_arrays(arrays, schema=ROWS_SCHEMA)


@dataclass(frozen=True)
class AliCCPConfig(RecipeConfig):
    # Parsing expands a piece of text ~14-fold while it works, so Ali-CCP's pieces are smaller.
    chunk_bytes: int = setting(PIECE_BYTES, "bytes of raw text parsed at a time (tests and tuning)", minimum=1, cli=False)
    unclicked_conversions: str = setting(
        "drop",
        "impressions converted without a click: drop them (torch-rechub's and AITM's reading; conversion then implies click), "
        "keep them as labelled (x-deeplearning's; the spec then declares no implies), or stop at the first; each is counted",
        choices=UNCLICKED,
    )


@register_recipe
class AliCCP(Recipe):
    """Ali-CCP's skeleton and common features to impression rows and a side table (see the module docstring)."""

    names = ("AliCCP",)
    page = DATASET_PAGE
    title = "Ali-CCP (Alibaba Click and Conversion Prediction; Ma et al., ESMM, SIGIR 2018)"
    labels = ("click", "conversion")
    Config = AliCCPConfig

    def find(self) -> dict[str, dict[str, RawFile]]:
        """``{split: {"skeleton": RawFile, "common": RawFile}}``: each CSV unpacked in ``DIR/AliCCP/`` or
        ``DIR``, else inside ``sample_<split>.tar.gz`` in the same two folders."""
        folders = [self.data_dir / self.name, self.data_dir]
        found: dict[str, dict[str, RawFile]] = {}
        for split in SPLITS:
            archive = archive_name(split)
            missing = f"download {archive} from {DATASET_PAGE} into {self.data_dir}/ (see docs/recipes/aliccp.md)"
            hint = f"is the download of {archive} from {DATASET_PAGE} complete?"
            found[split] = {}
            for kind, csv_name in (("skeleton", skeleton_name(split)), ("common", common_name(split))):
                places = [Place(folder / csv_name) for folder in folders] + [Place(folder / archive, ((csv_name,),)) for folder in folders]
                found[split][kind] = locate(csv_name, places, missing=missing, hint=hint)
        return found

    def sources(self, files: dict[str, dict[str, RawFile]]) -> list[str]:
        return list(dict.fromkeys(str(f.path) for split in SPLITS for f in files[split].values()))

    def convert(self, files: dict[str, dict[str, RawFile]], output: Output) -> None:
        for split in SPLITS:
            self._convert_split(split, files[split]["skeleton"], files[split]["common"], output)

    def _convert_split(self, split: str, skeleton: RawFile, common: RawFile, output: Output) -> None:
        """``common``'s histories to the side table, then ``skeleton`` joined to its profiles to output ``split``."""
        chunk_bytes, policy = self.config.chunk_bytes, self.config.unclicked_conversions
        side = table_name(split)
        with output.parquet(side, SIDE_SCHEMA, tally=False) as sink:
            users = read_common(common, sink.write, chunk_bytes=chunk_bytes, progress=self.progress, report=output.report)
        output.parquet(split, ROWS_SCHEMA)
        tally = output.report.tally(split)
        referenced = np.zeros(users.rows, dtype=bool)
        unclicked_lines = 0
        with skeleton.open() as file:
            pieces = read_pieces(
                file, SKELETON_COLUMNS, SKELETON_TYPES, report=output.report, chunk_bytes=chunk_bytes, progress=self.progress,
                dialect=DIALECT, nullable=("feature_list",),
            )  # fmt: skip
            for piece, data in pieces:
                click, conversion = data.column("click").to_numpy(), data.column("conversion").to_numpy()
                unclicked = _unclicked(file.name, piece.first_line, click, conversion, policy=policy)
                keys = parse_keys(file.name, piece.first_line, data.column(KEY))
                rows, found = users.find(keys)
                if not found.all():
                    row = int((~found).argmax())
                    raise DataError(
                        file.name, f"common feature index {int(keys[row]):016x} has no line in {common.name}", line=piece.first_line + row, column=KEY
                    )
                lists = data.column("feature_list").combine_chunks()
                # A dropped line is checked like any other: it is left out, not excused.
                items = parse_features(file.name, piece.first_line, lists, data.column("feature_count").to_numpy(), SAMPLE)
                table = _rows(users, rows, items, data.column("sample_id").to_numpy(), keys, click, conversion)
                unclicked_lines += int(unclicked.sum())
                if policy == "drop" and unclicked.any():
                    table, rows = table.filter(pa.array(~unclicked)), rows[~unclicked]
                referenced[rows] = True
                output.write(split, table)
        if tally.rows == 0:
            raise DataError(skeleton.name, f"no line is left once the {unclicked_lines:,} conversions without a click are dropped")
        unused = int((~referenced).sum())
        if unused:
            output.keep_rows(side, referenced)
        counts = {"common_rows": users.rows, "common_features": users.features, "unused_common_rows": unused, "unclicked_conversions": unclicked_lines}
        for key, count in counts.items():
            tally.count(key, count)
        tally.details.append(
            f"{users.rows - unused:,} common-feature lines in {side}.parquet ({users.features:,} history features read, "
            f"{users.nbytes / 1e6:,.0f} MB of profiles held)"
        )
        if unused:
            tally.details.append(f"{unused:,} common-feature lines have no impression: left out")
        if unclicked_lines:
            done = "dropped" if policy == "drop" else "kept (click 0, conversion 1)"
            tally.details.append(f"{unclicked_lines:,} conversions without a click {done}")

    def specs(self, files: dict[str, dict[str, RawFile]]) -> dict[str, tuple[dict, str]]:
        # Written after the rows: the rule is declared only if every row written keeps it.
        kept = self.config.unclicked_conversions == "keep" and self.report.total("unclicked_conversions") > 0
        spec = dataset_spec(self.name, implies=not kept)
        return {"dataset.yaml": (spec, _KEPT_NOTES if kept else _SPEC_NOTES)}
