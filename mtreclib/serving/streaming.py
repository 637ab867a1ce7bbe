"""Scoring a file of new rows into a file of per-task probabilities, in bounded memory.

The input is read in chunks (Parquet batches, CSV pieces: ``mtreclib.data.sources``), each
encoded with the checkpoint's encoders on a background thread while the model scores the one
before, and written out at once; memory is a few chunks whatever the file's size. Rows keep
their input order (a regression task's column holds its prediction, on the target's transformed
scale). The output holds the id columns asked for, then one probability column per
task, named like the task.

Everything that can be refused is refused before the first row is scored: the formats (from
the suffixes), the input's columns, the output's folder. A bad value met later stops the run
with one line naming the file, row (Parquet) or line (CSV) and column; the output is written
to a temporary name and renamed only when complete, so no half-written file is left.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mtreclib.core.atomic import atomic_output, check_writable
from mtreclib.core.errors import DataError, UserError
from mtreclib.core.progress import Progress
from mtreclib.data.csvchunks import CHUNK_BYTES, prefetch
from mtreclib.data.sources import Chunk, file_columns, read_chunks
from mtreclib.data.spec import CsvOptions, DatasetSpec
from mtreclib.data.table import MultiTaskTable
from mtreclib.serving.inference import Inference

# Rows per chunk: enough for dozens of batches per chunk (the per-chunk costs vanish), few enough
# that the chunks in flight (one scored, one encoded ahead, one read) stay in the hundreds of MB
# for a hundred wide columns. CSV pieces of CHUNK_BYTES hold about as many rows.
PARQUET_ROWS = 64 * 1024
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")


def file_format(path: Path, flag: str) -> str:
    """``parquet`` or ``csv`` from a file name's suffix."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    known = ", ".join(PARQUET_SUFFIXES + CSV_SUFFIXES)
    raise UserError(f"{flag} {path}: cannot tell the format from the suffix; expected one of {known}")


@dataclass(frozen=True)
class PredictionSummary:
    """What a run of ``predict_file`` did."""

    rows: int
    seconds: float
    output: Path

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def reading_spec(inference: Inference, path: Path, *, delimiter: str | None = None, header: bool | None = None) -> DatasetSpec:
    """The checkpoint's spec, reading ``path`` in its own format; CSV options overridden where given."""
    spec = inference.encoders.spec
    fmt = file_format(path, "--input")
    options = spec.csv
    if fmt == "csv":
        if delimiter is None and path.name.lower().removesuffix(".gz").endswith(".tsv") and options.delimiter == ",":
            delimiter = "\t"
        changes = {key: value for key, value in (("delimiter", delimiter), ("header", header)) if value is not None}
        if changes:
            try:
                options = CsvOptions.build({**options.to_dict(), **changes}, what="CSV options")
            except UserError as error:
                raise UserError(f"--input {path}: {error}") from None
    return replace(spec, format=fmt, csv=options, splits={}, split=None)


def check_input(inference: Inference, spec: DatasetSpec, path: Path, id_columns: Sequence[str]) -> None:
    """The input exists and has every column the model reads, and the id columns."""
    if not path.exists():
        raise UserError(f"--input {path}: no such file")
    if not path.is_file():
        raise UserError(f"--input {path}: is not a file")
    present = file_columns(spec, path)
    features = inference.feature_columns()
    for name in (*features, *id_columns):
        if name not in present:
            shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
            what = f"column {name!r} (the model reads {', '.join(features)})" if name in features else f"id column {name!r}"
            header = {"line": 1} if spec.format == "csv" and spec.csv.header else {}
            raise DataError(path, f"no {what}; the file has: {shown}", **header)


def check_output(output: Path, input_path: Path, tasks: Sequence[str], id_columns: Sequence[str]) -> str:
    """The output's format, after refusing an output that could not be written or would clobber the input."""

    fmt = file_format(output, "--output")
    check_writable(output, "--output")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output {output}: cannot make its folder ({error.strerror})") from None
    if output.exists() and input_path.exists() and output.resolve() == input_path.resolve():
        raise UserError(f"--output {output}: is the input file; write the scores elsewhere")
    repeated = next((name for name in id_columns if list(id_columns).count(name) > 1), None)
    if repeated:
        raise UserError(f"--id-column {repeated}: named twice")
    clash = next((name for name in id_columns if name in tasks), None)
    if clash:
        raise UserError(f"--id-column {clash}: the output already has a column {clash!r}, the task's probabilities")
    return fmt


class _Writer:
    """Tables appended to a Parquet or CSV (optionally gzipped) file, opened on the first table."""

    def __init__(self, path: Path, fmt: str):
        self.path = path
        self.fmt = fmt
        self.writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self.sink: pa.NativeFile | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            if self.fmt == "parquet":
                self.writer = pq.ParquetWriter(self.path, table.schema)
            else:
                gzipped = self.path.name.lower().endswith(".gz")
                self.sink = pa.CompressedOutputStream(str(self.path), "gzip") if gzipped else pa.OSFile(str(self.path), "wb")
                self.writer = pacsv.CSVWriter(self.sink, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        """Finish the file (again: nothing)."""
        writer, sink, self.writer, self.sink = self.writer, self.sink, None, None
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()


def _output_table(chunk: Chunk, probabilities: np.ndarray, tasks: Sequence[str], id_columns: Sequence[str]) -> pa.Table:
    columns = {name: chunk.table.column(name) for name in id_columns}
    columns.update({task: pa.array(probabilities[:, t]) for t, task in enumerate(tasks)})
    return pa.table(columns)


def _empty_output(spec: DatasetSpec, path: Path, tasks: Sequence[str], id_columns: Sequence[str]) -> pa.Table:
    """The output of an input without rows: its columns, no rows."""
    fields = []
    if spec.format == "parquet":
        stored = pq.ParquetFile(path).schema_arrow
        fields = [stored.field(name) for name in id_columns]
    else:
        fields = [pa.field(name, pa.string()) for name in id_columns]
    fields += [pa.field(task, pa.float32()) for task in tasks]
    return pa.schema(fields).empty_table()


def _parquet_rows(path: Path) -> int | None:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError):
        return None


def predict_file(
    inference: Inference,
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    id_columns: Sequence[str] = (),
    delimiter: str | None = None,
    header: bool | None = None,
    progress: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> PredictionSummary:
    """Score every row of ``input_path`` into ``output`` (see the module docstring).

    ``id_columns``: input columns copied to the output before the scores. ``delimiter``,
    ``header``: CSV options instead of the dataset spec's. ``chunk_bytes``: CSV text parsed at a
    time (Parquet is read ``PARQUET_ROWS`` rows at a time).
    """
    input_path, output = Path(input_path), Path(output)
    id_columns = tuple(id_columns)
    inference.check_raw_rows()
    out_format = check_output(output, input_path, inference.tasks, id_columns)
    spec = reading_spec(inference, input_path, delimiter=delimiter, header=header)
    check_input(inference, spec, input_path, id_columns)
    total = _parquet_rows(input_path) if spec.format == "parquet" else None
    start = time.perf_counter()
    rows = 0

    def encoded_chunks() -> Iterator[tuple[Chunk, MultiTaskTable]]:
        chunks = read_chunks(
            spec, (input_path,), chunk_bytes=chunk_bytes, columns=inference.feature_columns(), passthrough=id_columns, parquet_rows=PARQUET_ROWS
        )
        for chunk in chunks:
            yield chunk, inference.encode(chunk.table, chunk.place)

    with atomic_output(output) as temporary, Progress(total, f"scoring {input_path.name}", enabled=progress, unit="row", unit_scale=True) as bar:
        writer = _Writer(temporary, out_format)
        try:
            # Encoding the next chunk (Arrow and NumPy, mostly outside the GIL) overlaps with scoring this one.
            with contextlib.closing(prefetch(encoded_chunks(), depth=1)) as chunks:
                for chunk, encoded in chunks:
                    probabilities = inference.probabilities(encoded)
                    writer.write(_output_table(chunk, probabilities, inference.tasks, id_columns))
                    rows += len(chunk)
                    bar.update(len(chunk))
            if rows == 0:
                writer.write(_empty_output(spec, input_path, inference.tasks, id_columns))
            writer.close()
        except OSError as error:  # the output's disk; the input's errors arrive as DataError
            raise UserError(f"--output {output}: cannot write ({error.strerror or error})") from None
        finally:
            with contextlib.suppress(OSError):  # already failing: the first error is the one to report
                writer.close()
    return PredictionSummary(rows, time.perf_counter() - start, output)
