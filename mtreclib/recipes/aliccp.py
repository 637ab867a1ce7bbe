"""Ali-CCP (Alibaba Click and Conversion Prediction, the ESMM paper's data) to Parquet and a dataset spec.

Ma et al., "Entire Space Multi-Task Model", SIGIR 2018; https://tianchi.aliyun.com/dataset/408.
``mtrec preprocess --dataset AliCCP`` reads ``sample_train.tar.gz`` and ``sample_test.tar.gz``
(or the CSVs they hold) and writes ``AliCCP/train.parquet``, ``AliCCP/test.parquet`` and
``AliCCP/dataset.yaml``. One output row per skeleton line (an impression), in file order:

- ``sample_id``: the line's sample id; ``common_feature_index``: its common-features index, the
  16 hex digits read as a 64-bit number (int64, two's complement), the spec's ``group``;
- ``click``, ``conversion``: int8 0/1; a conversion without a click is an error, so the
  conversion task over all impressions is the ESMM paper's CTCVR;
- the 23 fields of the paper (aliccp_features.FIELDS), named by their field ids: a single-valued
  field (101, 121..129, 205, 206, 207, 216, 301) as an int64 feature id, null where the line lacks
  it; a multi-valued field (109_14, 110_14, 127_14, 150_14, 210, 508, 509, 702, 853) as a list
  of int64 feature ids with every feature kept, in the order of the line, and a parallel list of
  their float32 values in ``<field>_weight``; empty where the line lacks the field. The user
  fields come from the skeleton line's common-features line.

Memory: one split's common features are held (aliccp_common: about 3 GB at full size); skeleton
lines go through in pieces of ``PIECE_BYTES`` (8 MB) of text, written as row groups of at most
``ROW_GROUP_ROWS`` rows and about ``ROW_GROUP_VALUES`` list values, so memory does not grow with
the number of samples. Every user feature is repeated on each of its ~58 samples: the output
holds about 500 user features a row at full size (see docs/recipes/aliccp.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from tqdm.auto import tqdm

from mtreclib.data.csvchunks import Dialect, line_pieces, parse_piece, prefetch
from mtreclib.errors import DataError
from mtreclib.recipes import register_recipe
from mtreclib.recipes.aliccp_common import PIECE_BYTES, CommonTable, read_common
from mtreclib.recipes.aliccp_features import COMMON, FIELDS, SAMPLE, Field, FieldValues, parse_features, parse_keys, weight_column
from mtreclib.recipes.aliccp_files import DATASET_PAGE, SPLITS, RawFile, find_raw_files

NAME = "AliCCP"
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
ROW_GROUP_ROWS = 1_000_000
ROW_GROUP_VALUES = 4_000_000
OUTPUTS = ("train.parquet", "test.parquet", "dataset.yaml")


def output_schema() -> pa.Schema:
    """The columns of the Parquet splits, in order."""
    columns = [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("common_feature_index", pa.int64(), nullable=False),
        pa.field("click", pa.int8(), nullable=False),
        pa.field("conversion", pa.int8(), nullable=False),
    ]
    for field in FIELDS:
        if field.multi:
            columns.append(pa.field(field.name, pa.list_(pa.int64()), nullable=False))
            columns.append(pa.field(weight_column(field), pa.list_(pa.float32()), nullable=False))
        else:
            columns.append(pa.field(field.name, pa.int64()))
    return pa.schema(columns)


SCHEMA = output_schema()


def dataset_spec(name: str = NAME) -> dict:
    """The ``dataset.yaml`` content (docs/dataset-spec.md) for the files this recipe writes."""
    return {
        "name": name,
        "format": "parquet",
        "train": "train.parquet",
        "test": "test.parquet",
        "categorical": [{"name": f.name, "role": f.role} for f in FIELDS if not f.multi],
        # Sum of the features' embeddings weighted by their values (log counts; 1 for 210), as
        # the ESMM authors' x-deeplearning model pools every field.
        "multi_valued": [{"name": f.name, "weights": weight_column(f), "pooling": "sum", "role": f.role} for f in FIELDS if f.multi],
        "numerical": [],
        "labels": ["click", "conversion"],
        "implies": {"conversion": "click"},
        "group": "common_feature_index",
    }


_SPEC_HEADER = """\
# Ali-CCP (Alibaba Click and Conversion Prediction; Ma et al., ESMM, SIGIR 2018), written by
# `mtrec preprocess --dataset {name}` (mtreclib/recipes/aliccp.py) from {sources}
# of {page}. Columns are named by the paper's field ids; see docs/recipes/aliccp.md.
# There is no validation file: `mtrec train` holds out --valid-fraction of train.
# conversion implies click, so the conversion task over all impressions is CTCVR.
"""


def write_spec(path: Path, name: str, sources: str) -> None:
    text = _SPEC_HEADER.format(name=name, sources=sources, page=DATASET_PAGE)
    path.write_text(text + yaml.safe_dump(dataset_spec(name), sort_keys=False, default_flow_style=None, width=120))


@dataclass
class SplitReport:
    """What converting one split did.

    Attributes:
        rows: output rows (skeleton lines).
        clicks, conversions: label counts.
        common_rows: common-features lines held; common_features: their features in all;
            common_bytes: the memory they take.
        unused_common_rows: common-features lines no skeleton line refers to.
        row_groups: Parquet row groups written.
        raw_bytes: uncompressed size of the two CSVs.
        seconds: wall time.
    """

    rows: int = 0
    clicks: int = 0
    conversions: int = 0
    common_rows: int = 0
    common_features: int = 0
    common_bytes: int = 0
    unused_common_rows: int = 0
    row_groups: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0


class _BackgroundWriter:
    """Writes tables to a ParquetWriter on a worker thread, in order, at most ``depth`` pending.

    Parquet encoding and compression run without the GIL, so the next piece is parsed and
    joined meanwhile. Leaving the context waits for the pending writes and closes the file.
    """

    def __init__(self, path: Path, schema: pa.Schema, depth: int = 2):
        # zstd level 3, not Arrow's default 1: consecutive rows repeat the same user lists (a few
        # KB each), which level 3 finds and level 1 mostly misses (files ~4x smaller, no slower).
        # Dictionary pages and min/max statistics only for the single-valued columns: list values
        # rarely repeat within a page, and their statistics cost ~15% of the writing for nothing.
        single = [f.name for f in schema if not pa.types.is_list(f.type)]
        self._writer = pq.ParquetWriter(
            str(path), schema, compression="zstd", compression_level=3, use_dictionary=single, write_statistics=single
        )
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtrec-parquet")
        self._pending: deque[Future] = deque()

    def write(self, table: pa.Table) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._writer.write_table, table, row_group_size=ROW_GROUP_ROWS))

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
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def _slice(values: FieldValues, start: int, stop: int, offsets: np.ndarray) -> FieldValues:
    """Lines ``start:stop`` of a piece's field; ``offsets`` the (n + 1,) starts of its lines."""
    return FieldValues(values.counts[start:stop], values.ids[offsets[start] : offsets[stop]], values.weights[offsets[start] : offsets[stop]])


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


def _columns(field: Field, values: FieldValues) -> list[pa.Array]:
    """The output column(s) of one field over a batch of lines."""
    if not field.multi:
        present = values.counts > 0
        ids = np.zeros(len(present), dtype=np.int64)
        ids[present] = values.ids
        return [pa.array(ids, mask=~present)]
    offsets = pa.array(_offsets(values.counts).astype(np.int32))
    return [pa.ListArray.from_arrays(offsets, pa.array(values.ids)), pa.ListArray.from_arrays(offsets, pa.array(values.weights))]


def _check_labels(path: str, first_line: int, click: np.ndarray, conversion: np.ndarray) -> None:
    for column, labels in (("click", click), ("conversion", conversion)):
        bad = (labels != 0) & (labels != 1)
        if bad.any():
            row = int(bad.argmax())
            raise DataError(path, f"expected a label 0 or 1, found {labels[row]}", line=first_line + row, column=column)
    orphan = (conversion == 1) & (click == 0)
    if orphan.any():
        raise DataError(
            path,
            "a conversion without a click; Ali-CCP's conversions follow clicks (the conversion task is CTCVR)",
            line=first_line + int(orphan.argmax()),
            column="conversion",
        )


def _batches(volume: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges of at most ROW_GROUP_ROWS rows and about ROW_GROUP_VALUES list values each."""
    total = np.cumsum(volume, dtype=np.int64)
    ranges, start = [], 0
    while start < len(volume):
        before = int(total[start - 1]) if start else 0
        stop = int(np.searchsorted(total, before + ROW_GROUP_VALUES, side="right"))
        stop = min(max(stop, start + 1), start + ROW_GROUP_ROWS, len(volume))
        ranges.append((start, stop))
        start = stop
    return ranges


def _joined(
    users: CommonTable,
    rows: np.ndarray,
    items: dict[str, FieldValues],
    sample_id: np.ndarray,
    keys: np.ndarray,
    click: np.ndarray,
    conversion: np.ndarray,
) -> Iterator[pa.Table]:
    """Output tables of a piece's n lines, each joined to its common line ``rows[i]``, a row group each.

    ``items`` holds the lines' own fields; ``sample_id``, ``keys``, ``click`` and ``conversion`` are (n,).
    """
    item_offsets = {name: _offsets(values.counts) for name, values in items.items()}
    # The list values each line brings, its user's and its own: row groups are cut by them.
    volume = sum(users.fields[f.name].counts[rows] if f.side == COMMON else items[f.name].counts for f in FIELDS if f.multi)
    for first, stop in _batches(volume):
        joined = users.take(rows[first:stop])
        arrays = [
            pa.array(sample_id[first:stop]),
            pa.array(keys[first:stop].view(np.int64)),
            pa.array(click[first:stop].astype(np.int8)),
            pa.array(conversion[first:stop].astype(np.int8)),
        ]
        for field in FIELDS:
            values = joined[field.name] if field.name in joined else _slice(items[field.name], first, stop, item_offsets[field.name])
            arrays += _columns(field, values)
        yield pa.Table.from_arrays(arrays, schema=SCHEMA)


def convert_split(skeleton: RawFile, common: RawFile, output: Path, *, chunk_bytes: int = PIECE_BYTES, progress: bool = True) -> SplitReport:
    """Join ``skeleton`` to ``common`` into the Parquet file ``output``, streaming the skeleton.

    ``output`` is written as given: the caller writes to a temporary name and renames.
    """
    start = time.perf_counter()
    users, common_size = read_common(common, chunk_bytes=chunk_bytes, progress=progress)
    report = SplitReport(common_rows=users.rows, common_features=users.features, common_bytes=users.nbytes, raw_bytes=common_size)
    referenced = np.zeros(users.rows, dtype=bool)
    with contextlib.ExitStack() as stack:
        stream, size = stack.enter_context(skeleton.open())
        report.raw_bytes += size
        pieces = stack.enter_context(contextlib.closing(prefetch(line_pieces(stream, chunk_bytes=chunk_bytes))))
        writer = stack.enter_context(_BackgroundWriter(output, SCHEMA))
        bar = stack.enter_context(
            tqdm(total=size, unit="B", unit_scale=True, desc=skeleton.csv_name, disable=None if progress else True, leave=False)
        )
        for piece in pieces:
            data = parse_piece(skeleton.name, piece, SKELETON_COLUMNS, SKELETON_TYPES, dialect=DIALECT, nullable=("feature_list",))
            click, conversion = data.column("click").to_numpy(), data.column("conversion").to_numpy()
            _check_labels(skeleton.name, piece.first_line, click, conversion)
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
            referenced[rows] = True
            lists = data.column("feature_list").combine_chunks()
            items = parse_features(skeleton.name, piece.first_line, lists, data.column("feature_count").to_numpy(), SAMPLE)
            for table in _joined(users, rows, items, data.column("sample_id").to_numpy(), keys, click, conversion):
                writer.write(table)
                report.row_groups += 1
            report.rows += len(click)
            report.clicks += int(click.sum())
            report.conversions += int(conversion.sum())
            bar.update(piece.data.nbytes)
    if report.rows == 0:
        raise DataError(skeleton.name, f"the file is empty; expected lines of {len(SKELETON_COLUMNS)} values ({', '.join(SKELETON_COLUMNS)})")
    report.unused_common_rows = int((~referenced).sum())
    report.seconds = time.perf_counter() - start
    return report


def preprocess(data_dir: str | Path, name: str = NAME, *, chunk_bytes: int = PIECE_BYTES, progress: bool = True) -> dict[str, SplitReport]:
    """Convert the Ali-CCP download under ``data_dir`` to ``data_dir/<name>/`` (train, test, spec).

    Everything is written into a hidden temporary folder inside ``data_dir/<name>/`` (which may
    also hold the raw files) and moved into place only when all of it is complete: a failure
    leaves no output, and any earlier output untouched.
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
                files[split]["skeleton"], files[split]["common"], temporary / f"{split}.parquet", chunk_bytes=chunk_bytes, progress=progress
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
            f"({r.clicks:,} clicks, {r.conversions:,} conversions); {r.common_rows:,} common-feature lines held "
            f"({r.common_features:,} features, {r.common_bytes / 1e6:,.0f} MB); {r.raw_bytes / 1e6:,.0f} MB of CSV "
            f"in {r.seconds:.1f} s ({rate:,.0f} rows/s)"
        )
        if r.unused_common_rows:
            line += f"; {r.unused_common_rows:,} common-feature lines have no sample"
        lines.append(line)
    folder = Path(data_dir) / name
    lines.append(f"wrote {folder}/train.parquet, test.parquet and dataset.yaml; next: mtrec train --dataset {name} --data-dir {data_dir}")
    return lines


@register_recipe((NAME,), DATASET_PAGE)
def run(data_dir: Path, name: str, *, progress: bool) -> list[str]:
    """``mtrec preprocess --dataset AliCCP``: the download under ``data_dir`` to ``data_dir/AliCCP/``."""
    return summary(preprocess(data_dir, name, progress=progress), data_dir, name)
