"""Ali-CCP (Alibaba Click and Conversion Prediction, the ESMM paper's data) to Parquet and a dataset spec.

Ma et al., "Entire Space Multi-Task Model", SIGIR 2018; https://tianchi.aliyun.com/dataset/408.
``mtrec preprocess --dataset AliCCP`` reads ``sample_train.tar.gz`` and ``sample_test.tar.gz``
(or the CSVs they hold) and writes, per split, ``AliCCP/<split>.parquet`` (the impressions) and
``AliCCP/common_<split>.parquet`` (the side table of user histories), and ``AliCCP/dataset.yaml``
(aliccp_spec). One row per skeleton line (an impression), in file order:

- ``sample_id``: the line's sample id; ``common_feature_index``: its common-features index, the
  16 hex digits read as a 64-bit number (int64, two's complement): the spec's ``group``, and the
  key of the side table;
- ``click``, ``conversion``: int8 0/1; a conversion without a click is an error (or, with
  ``drop_unclicked_conversions``, the line is left out and counted), so the conversion task over
  all impressions is the ESMM paper's CTCVR;
- the fields of the paper (aliccp_features.FIELDS) but the user histories, named by their field
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

Memory: a split's common-features lines are held as their indexes and profile ids only
(aliccp_common: ~105 bytes a line, ~80 MB at full size) while the histories stream to the side
table; skeleton lines go through in pieces of ``PIECE_BYTES`` (8 MB) of text, written in row
groups (aliccp_parquet), so memory does not grow with the number of samples.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import Dialect, line_pieces, parse_piece, prefetch
from mtreclib.recipes import register_recipe
from mtreclib.recipes.aliccp_common import PIECE_BYTES, SIDE_SCHEMA, CommonTable, list_columns, read_common
from mtreclib.recipes.aliccp_features import SAMPLE, Field, FieldValues, parse_features, parse_keys
from mtreclib.recipes.aliccp_files import DATASET_PAGE, SPLITS, RawFile, find_raw_files
from mtreclib.recipes.aliccp_parquet import RowGroupWriter, keep_rows
from mtreclib.recipes.aliccp_spec import NAME, OUTPUTS, ROW_FIELDS, ROWS_SCHEMA, rows_name, table_name, write_spec

SKELETON_COLUMNS = ("sample_id", "click", "conversion", "common_feature_index", "feature_count", "feature_list")
SKELETON_TYPES = {
    "sample_id": pa.int64(),
    "click": pa.int64(),
    "conversion": pa.int64(),
    "common_feature_index": pa.string(),
    "feature_count": pa.int64(),
    "feature_list": pa.string(),
}
DIALECT = Dialect(",", quoted=False)


@dataclass
class SplitReport:
    """What converting one split did.

    Attributes:
        rows: impressions written; clicks, conversions: their label counts.
        dropped_conversions: lines left out as conversions without a click (only with
            ``drop_unclicked_conversions``).
        common_rows: common-features lines read; common_features: their history features (in the
            side table once each); common_bytes: the memory held for the join.
        unused_common_rows: common-features lines no written impression refers to, left out of
            the side table.
        row_groups, common_row_groups: Parquet row groups of the two files.
        raw_bytes: uncompressed size of the two CSVs.
        seconds: wall time.
    """

    rows: int = 0
    clicks: int = 0
    conversions: int = 0
    dropped_conversions: int = 0
    common_rows: int = 0
    common_features: int = 0
    common_bytes: int = 0
    unused_common_rows: int = 0
    row_groups: int = 0
    common_row_groups: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0


def _columns(field: Field, values: FieldValues) -> list[pa.Array]:
    """The output column(s) of one field over n lines."""
    if not field.multi:
        present = values.counts > 0
        ids = np.zeros(len(present), dtype=np.int64)
        ids[present] = values.ids
        return [pa.array(ids, mask=~present)]
    return list_columns(values)


def _unclicked(path: str, first_line: int, click: np.ndarray, conversion: np.ndarray, *, drop: bool) -> np.ndarray:
    """(n,) the lines that are a conversion without a click; an error unless ``drop``. Labels are checked first."""
    for column, labels in (("click", click), ("conversion", conversion)):
        bad = (labels != 0) & (labels != 1)
        if bad.any():
            row = int(bad.argmax())
            raise DataError(path, f"expected a label 0 or 1, found {labels[row]}", line=first_line + row, column=column)
    unclicked = (conversion == 1) & (click == 0)
    if unclicked.any() and not drop:
        raise DataError(
            path,
            "a conversion without a click; Ali-CCP's conversions follow clicks (the conversion task is CTCVR). "
            "To leave such lines out and go on, run again with --drop-unclicked-conversions (it reports how many)",
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


def convert_split(
    skeleton: RawFile,
    common: RawFile,
    rows_output: Path,
    table_output: Path,
    *,
    chunk_bytes: int = PIECE_BYTES,
    progress: bool = True,
    drop_unclicked_conversions: bool = False,
) -> SplitReport:
    """Write ``common``'s histories to ``table_output`` and ``skeleton`` joined to its profiles to ``rows_output``.

    Both are written as given: the caller writes to temporary names and renames.
    """
    start = time.perf_counter()
    with RowGroupWriter(table_output, SIDE_SCHEMA) as side:
        users, common_size = read_common(common, side.write, chunk_bytes=chunk_bytes, progress=progress)
    report = SplitReport(
        common_rows=users.rows, common_features=users.features, common_bytes=users.nbytes, common_row_groups=side.row_groups, raw_bytes=common_size
    )
    referenced = np.zeros(users.rows, dtype=bool)
    lines = 0
    with contextlib.ExitStack() as stack:
        stream, size = stack.enter_context(skeleton.open())
        report.raw_bytes += size
        pieces = stack.enter_context(contextlib.closing(prefetch(line_pieces(stream, chunk_bytes=chunk_bytes))))
        writer = stack.enter_context(RowGroupWriter(rows_output, ROWS_SCHEMA))
        bar = stack.enter_context(
            tqdm(total=size, unit="B", unit_scale=True, desc=skeleton.csv_name, disable=None if progress else True, leave=False)
        )
        for piece in pieces:
            data = parse_piece(skeleton.name, piece, SKELETON_COLUMNS, SKELETON_TYPES, dialect=DIALECT, nullable=("feature_list",))
            click, conversion = data.column("click").to_numpy(), data.column("conversion").to_numpy()
            dropped = _unclicked(skeleton.name, piece.first_line, click, conversion, drop=drop_unclicked_conversions)
            keys = parse_keys(skeleton.name, piece.first_line, data.column("common_feature_index"))
            rows, found = users.find(keys)
            if not found.all():
                row = int((~found).argmax())
                raise DataError(
                    skeleton.name,
                    f"common feature index {int(keys[row]):016x} has no line in {common.name}",
                    line=piece.first_line + row,
                    column="common_feature_index",
                )
            lists = data.column("feature_list").combine_chunks()
            # A dropped line is checked like any other: it is left out, not excused.
            items = parse_features(skeleton.name, piece.first_line, lists, data.column("feature_count").to_numpy(), SAMPLE)
            table = _rows(users, rows, items, data.column("sample_id").to_numpy(), keys, click, conversion)
            lines += len(click)
            if dropped.any():
                keep = ~dropped
                table, rows, click, conversion = table.filter(pa.array(keep)), rows[keep], click[keep], conversion[keep]
                report.dropped_conversions += int(dropped.sum())
            referenced[rows] = True
            writer.write(table)
            report.rows += len(click)
            report.clicks += int(click.sum())
            report.conversions += int(conversion.sum())
            bar.update(piece.data.nbytes)
    report.row_groups = writer.row_groups
    if lines == 0:
        raise DataError(skeleton.name, f"the file is empty; expected lines of {len(SKELETON_COLUMNS)} values ({', '.join(SKELETON_COLUMNS)})")
    if report.rows == 0:
        raise DataError(skeleton.name, f"no line is left once the {report.dropped_conversions:,} conversions without a click are dropped")
    report.unused_common_rows = int((~referenced).sum())
    if report.unused_common_rows:
        report.common_row_groups = keep_rows(table_output, referenced)
    report.seconds = time.perf_counter() - start
    return report


def preprocess(
    data_dir: str | Path, name: str = NAME, *, chunk_bytes: int = PIECE_BYTES, progress: bool = True, drop_unclicked_conversions: bool = False
) -> dict[str, SplitReport]:
    """Convert the Ali-CCP download under ``data_dir`` to ``data_dir/<name>/`` (aliccp_spec.OUTPUTS).

    ``drop_unclicked_conversions``: leave out the lines that are a conversion without a click
    (counted in the reports) instead of stopping at the first. Everything is written into a
    hidden temporary folder inside ``data_dir/<name>/`` (which may also hold the raw files) and
    moved into place only when all of it is complete: a failure leaves no output, and any
    earlier output untouched.
    """
    files = find_raw_files(data_dir, name)
    folder = Path(data_dir) / name
    created = not folder.exists()
    temporary = folder / f".{name}.tmp-{os.getpid()}"
    reports = {}
    try:
        shutil.rmtree(temporary, ignore_errors=True)  # left by a killed run of a process with our pid
        temporary.mkdir(parents=True)
        for split in SPLITS:
            reports[split] = convert_split(
                files[split]["skeleton"],
                files[split]["common"],
                temporary / rows_name(split),
                temporary / table_name(split),
                chunk_bytes=chunk_bytes,
                progress=progress,
                drop_unclicked_conversions=drop_unclicked_conversions,
            )
        sources = " and ".join(dict.fromkeys(f.path.name for split in SPLITS for f in files[split].values()))
        write_spec(temporary / "dataset.yaml", name, sources)
        for output in OUTPUTS:  # the spec last: a reader that finds it finds the splits
            os.replace(temporary / output, folder / output)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if created and folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
    return reports


def summary(reports: dict[str, SplitReport], data_dir: str | Path, name: str = NAME) -> list[str]:
    """Lines saying what ``preprocess`` wrote."""
    lines = []
    for split, r in reports.items():
        rate = r.rows / r.seconds if r.seconds else float("nan")
        line = (
            f"{split}: {r.rows:,} rows, click {r.clicks / max(r.rows, 1):.2%}, conversion {r.conversions / max(r.rows, 1):.3%} "
            f"({r.clicks:,} clicks, {r.conversions:,} conversions); {r.common_rows - r.unused_common_rows:,} common-feature lines "
            f"in {table_name(split)} ({r.common_features:,} history features read, {r.common_bytes / 1e6:,.0f} MB of profiles held); "
            f"{r.raw_bytes / 1e6:,.0f} MB of CSV in {r.seconds:.1f} s ({rate:,.0f} rows/s)"
        )
        if r.unused_common_rows:
            line += f"; {r.unused_common_rows:,} common-feature lines have no impression: left out"
        if r.dropped_conversions:
            line += f"; {r.dropped_conversions:,} conversions without a click dropped"
        lines.append(line)
    written = ", ".join(OUTPUTS[:-1])
    lines.append(f"wrote {written} and dataset.yaml in {Path(data_dir) / name}; next: mtrec train --dataset {name} --data-dir {data_dir}")
    return lines


@register_recipe((NAME,), DATASET_PAGE, options=("drop_unclicked_conversions",))
def run(data_dir: Path, name: str, *, progress: bool, drop_unclicked_conversions: bool = False) -> list[str]:
    """``mtrec preprocess --dataset AliCCP``: the download under ``data_dir`` to ``data_dir/AliCCP/``."""
    reports = preprocess(data_dir, name, progress=progress, drop_unclicked_conversions=drop_unclicked_conversions)
    return summary(reports, data_dir, name)
