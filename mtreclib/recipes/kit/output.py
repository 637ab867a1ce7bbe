"""A recipe's output folder: built under a temporary name beside its place, moved into place when complete.

``Output`` gives a recipe its sinks (Parquet, or CSV for the AliExpress processed layout) and a
place for its specs, and counts the rows and label positives of everything written
(``Report``). Everything goes to ``DIR/.NAME.tmp-PID/``; only when the recipe has finished
are the files moved to ``DIR/NAME/`` (the folder renamed whole if it is new, else file by file,
the specs last: a reader that finds a new spec finds the files it names). A failure removes the
temporary folder, so it leaves no output and any earlier output as it was; ``DIR/NAME/`` may
hold the download itself, which is never touched.

Sinks encode on a worker thread (Arrow writes Parquet and CSV without the GIL) while the recipe
parses the next piece; at most one write waits.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mtreclib.recipes.kit.report import Report

ROW_GROUP_ROWS = 1_000_000
# A gathering sink cuts a row group before it passes this much Arrow data (~290,000 Ali-CCP impressions).
ROW_GROUP_BYTES = 64 << 20


class _Worker:
    """One thread running the writes of a sink in order; ``submit`` waits while one is already pending."""

    def __init__(self, name: str):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future | None = None

    def submit(self, job, *args, **kwargs) -> None:
        self.wait()
        self._pending = self._pool.submit(job, *args, **kwargs)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def shutdown(self, failed: bool) -> None:
        """Wait for the pending write (its error raised unless another is already being reported)."""
        try:
            if failed and self._pending is not None:
                self._pending.exception()
            else:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)


class ParquetSink:
    """Tables of ``schema`` written to ``path`` in order (zstd).

    ``gather``: tables are gathered into row groups of at most ``ROW_GROUP_ROWS`` rows and
    ``ROW_GROUP_BYTES`` of Arrow data (for pieces that are small next to a row group); otherwise
    each table is written as it comes. Dictionary pages and statistics only for the columns that
    are not lists: list values rarely repeat within a page, and their statistics cost time for nothing.

    Attributes:
        row_groups: row groups written (or being written); rows: rows written.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, gather: bool = True):
        single = [f.name for f in schema if not pa.types.is_list(f.type)]
        self.path = path
        self._writer = pq.ParquetWriter(str(path), schema, compression="zstd", use_dictionary=single, write_statistics=single)
        self._worker = _Worker("mtrec-parquet")
        self._gather = gather
        self._gathered: list[pa.Table] = []
        self._gathered_rows = 0
        self._gathered_bytes = 0
        self.row_groups = 0
        self.rows = 0
        self.closed = False

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        if not self._gather:
            self._submit(table)
            return
        full = self._gathered_rows + table.num_rows > ROW_GROUP_ROWS or self._gathered_bytes + table.nbytes > ROW_GROUP_BYTES
        if full and self._gathered:
            self._flush()
        self._gathered.append(table)
        self._gathered_rows += table.num_rows
        self._gathered_bytes += table.nbytes

    def _flush(self) -> None:
        group = pa.concat_tables(self._gathered)
        self._gathered, self._gathered_rows, self._gathered_bytes = [], 0, 0
        self._submit(group)

    def _submit(self, table: pa.Table) -> None:
        self._worker.submit(self._writer.write_table, table, row_group_size=ROW_GROUP_ROWS)
        self.row_groups += -(-table.num_rows // ROW_GROUP_ROWS)

    def close(self, failed: bool = False) -> None:
        """Write what is gathered, wait for the writes and close the file (after an error, only close it)."""
        if self.closed:
            return
        self.closed = True
        try:
            if not failed and self._gathered:
                self._flush()
            self._worker.shutdown(failed)
        finally:
            self._writer.close()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, error_type: type | None, *exc_info: object) -> None:
        self.close(failed=error_type is not None)


class CsvSink:
    """Tables written to ``path`` as CSV in order: the ``header`` line, then the rows, unquoted, on a worker thread."""

    def __init__(self, path: Path, header: str):
        self.path = path
        self._file = pa.OSFile(str(path), "wb")
        self._file.write((header + "\n").encode())
        self._writer: pacsv.CSVWriter | None = None
        self._worker = _Worker("mtrec-csv")
        self.rows = 0
        self.closed = False

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            options = pacsv.WriteOptions(include_header=False, quoting_style="none")
            self._writer = pacsv.CSVWriter(self._file, table.schema, write_options=options)
        self.rows += table.num_rows
        self._worker.submit(self._writer.write_table, table)

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._worker.shutdown(failed)
            if self._writer is not None and not failed:
                self._writer.close()
        finally:
            self._file.close()


class Output:
    """The folder a recipe writes (see the module docstring); a context manager.

    Attributes:
        target: ``DIR/NAME``; folder: where the files are written until they are complete.
        report: counts what is written.
    """

    def __init__(self, target: Path, report: Report, labels: tuple[str, ...] = ()):
        self.target = target
        self.folder = target.parent / f".{target.name}.tmp-{os.getpid()}"
        self.report = report
        self.labels = labels
        self._scratch = target.parent / f".{target.name}.tmp-{os.getpid()}.scratch"
        self._sinks: dict[str, ParquetSink | CsvSink] = {}
        self._tallied: set[str] = set()
        self._files: list[str] = []

    def __enter__(self) -> Output:
        for folder in (self.folder, self._scratch):
            shutil.rmtree(folder, ignore_errors=True)  # left by a killed run of a process with our pid
        self.folder.mkdir(parents=True)
        return self

    def __exit__(self, error_type: type | None, *exc_info: object) -> None:
        try:
            failed = error_type is not None
            problem: BaseException | None = None
            for sink in self._sinks.values():  # every file closed, whatever fails
                try:
                    sink.close(failed or problem is not None)
                except BaseException as error:
                    problem = problem or error
            if problem is not None:
                raise problem
            if not failed:
                self._move_into_place()
        finally:
            for folder in (self.folder, self._scratch):
                shutil.rmtree(folder, ignore_errors=True)

    @property
    def scratch(self) -> Path:
        """A folder for the recipe's working files (removed at the end, whatever happens)."""
        self._scratch.mkdir(exist_ok=True)
        return self._scratch

    def _add(self, name: str, file: str, sink: ParquetSink | CsvSink, tally: bool) -> ParquetSink | CsvSink:
        if name in self._sinks:
            raise ValueError(f"output {name!r} opened twice")
        self._sinks[name] = sink
        self._files.append(file)
        if tally:
            self._tallied.add(name)
            self.report.tally(name)
        return sink

    def parquet(self, name: str, schema: pa.Schema, *, gather: bool = True, tally: bool = True) -> ParquetSink:
        """A sink for ``NAME.parquet``; ``tally``: count its rows in the report as output ``name``."""
        return self._add(name, f"{name}.parquet", ParquetSink(self.folder / f"{name}.parquet", schema, gather=gather), tally)

    def csv(self, name: str, header: str, *, tally: bool = True) -> CsvSink:
        """A sink for ``NAME.csv``, whose first line is ``header``."""
        return self._add(name, f"{name}.csv", CsvSink(self.folder / f"{name}.csv", header), tally)

    def write(self, name: str, table: pa.Table) -> None:
        """``table``'s rows to output ``name``, counted in the report."""
        self._sinks[name].write(table)
        if name in self._tallied:
            self.report.tally(name).add(table, self.labels)

    def text(self, file: str, text: str) -> None:
        """A text file (a spec); files ending in ``.yaml`` are moved into place last."""
        (self.folder / file).write_text(text)
        self._files.append(file)

    def keep_rows(self, name: str, keep: np.ndarray) -> int:
        """Rewrite output ``name`` (a closed Parquet sink) with only its rows where ``keep`` (N,) holds, in order.

        Reads one row group at a time. Returns the row groups written.
        """
        path = self._sinks[name].path
        source = pq.ParquetFile(path, pre_buffer=False)  # one row group in memory at a time
        kept = path.with_name(f".{path.name}.kept")
        try:
            with ParquetSink(kept, source.schema_arrow) as sink:
                start = 0
                for group in range(source.num_row_groups):
                    table = source.read_row_group(group)
                    sink.write(table.filter(pa.array(keep[start : start + table.num_rows])))
                    start += table.num_rows
            os.replace(kept, path)
        finally:
            kept.unlink(missing_ok=True)
        return sink.row_groups

    def _move_into_place(self) -> None:
        files = sorted(self._files, key=lambda file: file.endswith(".yaml"))  # the specs last
        self.report.files = files
        if not self.target.exists():
            os.rename(self.folder, self.target)
            return
        for file in files:
            os.replace(self.folder / file, self.target / file)
