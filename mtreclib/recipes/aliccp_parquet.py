"""Writing the Ali-CCP recipe's Parquet files: pieces gathered into row groups, encoded on a worker thread.

The recipe produces its rows a piece at a time (an 8 MB piece of text: ~35,000 impressions, or
~700 common-features lines). Written as they come, the row groups would be small and many; so
pieces are gathered until the next would take a row group past ``ROW_GROUP_ROWS`` rows or
``ROW_GROUP_BYTES`` bytes of Arrow data, and the group goes to a worker thread (Parquet encoding
and compression run without the GIL) while the next pieces are parsed. Memory: at most one
group gathering and one being written, ~2 x ``ROW_GROUP_BYTES``.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 1_000_000
# ~290,000 impressions, or ~10,000 common-features lines of ~500 features at full size.
ROW_GROUP_BYTES = 64 << 20


class RowGroupWriter:
    """Writes tables of ``schema`` to ``path`` in order, gathered into row groups, on a worker thread.

    Leaving the context writes what is gathered, waits for the writes and closes the file; after
    an error it only closes the file (the error already raised is the one to report).

    Attributes:
        row_groups: row groups written (or being written).
        rows: rows written.
    """

    def __init__(self, path: Path, schema: pa.Schema):
        # Dictionary pages and min/max statistics only for the single-valued columns: list values
        # rarely repeat within a page, and their statistics cost time for nothing.
        single = [f.name for f in schema if not pa.types.is_list(f.type)]
        self._writer = pq.ParquetWriter(str(path), schema, compression="zstd", use_dictionary=single, write_statistics=single)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtrec-parquet")
        self._pending: Future | None = None
        self._gathered: list[pa.Table] = []
        self._gathered_rows = 0
        self._gathered_bytes = 0
        self.row_groups = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        full = self._gathered_rows + table.num_rows > ROW_GROUP_ROWS or self._gathered_bytes + table.nbytes > ROW_GROUP_BYTES
        if full and self._gathered:
            self._flush()
        self._gathered.append(table)
        self._gathered_rows += table.num_rows
        self._gathered_bytes += table.nbytes
        self.rows += table.num_rows

    def _flush(self) -> None:
        group = pa.concat_tables(self._gathered)
        self._gathered, self._gathered_rows, self._gathered_bytes = [], 0, 0
        if self._pending is not None:
            self._pending.result()
        # One row group (a group holds at most ROW_GROUP_ROWS rows unless a single piece holds more).
        self._pending = self._pool.submit(self._writer.write_table, group, row_group_size=ROW_GROUP_ROWS)
        self.row_groups += -(-group.num_rows // ROW_GROUP_ROWS)

    def __enter__(self) -> RowGroupWriter:
        return self

    def __exit__(self, error_type: type | None, *exc_info: object) -> None:
        try:
            if error_type is None:
                if self._gathered:
                    self._flush()
                if self._pending is not None:
                    self._pending.result()
            elif self._pending is not None:
                self._pending.exception()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def keep_rows(path: Path, keep: np.ndarray) -> int:
    """Rewrite the Parquet file ``path`` with only its rows where ``keep`` (N,) holds, in order.

    Reads one row group at a time. Returns the row groups written.
    """
    source = pq.ParquetFile(path, pre_buffer=False)  # see data.sources: one row group in memory at a time
    kept = path.with_name(f".{path.name}.kept")
    try:
        with RowGroupWriter(kept, source.schema_arrow) as writer:
            start = 0
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                writer.write(table.filter(pa.array(keep[start : start + table.num_rows])))
                start += table.num_rows
        os.replace(kept, path)
    finally:
        kept.unlink(missing_ok=True)
    return writer.row_groups
