"""A memory-mapped cache of a processed CSV file, built once, so that the next run starts in seconds.

Layout: beside ``<folder>/train.csv`` the cache is ``<folder>/mtrec-cache/train/``:

    search_id.npy    (N,)     int64
    categorical.npy  (N, 16)  int32
    numerical.npy    (N, 63)  float32
    labels.npy       (N, 2)   uint8    click, conversion
    meta.json        the source's size and mtime, row count, per-field largest id, label counts

Why ``.npy`` files opened with ``np.load(mmap_mode="r")`` and not Arrow IPC: batches gather whole
rows at random positions, so each array is stored row-major, one contiguous record per row (64
bytes of ids, 252 of features); a columnar file would touch 80 separate pages for one row.
``torch.from_numpy`` wraps the maps without a copy, pages are read on demand and shared between
processes (one per GPU), and any NumPy user can open the files.

When it is rebuilt: ``meta.json`` records the CSV's size and modification time (nanoseconds); a
different size or time rebuilds the cache. A content hash would also catch an edit that keeps both,
but would read the whole CSV (gigabytes) at every start, which is what the cache exists to avoid.

Writing is crash- and race-safe: ``meta.json`` is deleted first and written last (temporary name,
then rename), each array goes to a temporary name and is renamed when complete, and a lock file
makes concurrent processes (``torchrun`` ranks) wait for one builder instead of all building.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mtreclib.atomic import write_json
from mtreclib.data.csvchunks import CHUNK_BYTES
from mtreclib.data.processed import CATEGORICAL_COLUMNS, LABEL_COLUMNS, NUMERICAL_COLUMNS, read_processed_chunks
from mtreclib.data.table import MultiTaskTable
from mtreclib.errors import DataError, UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first runs would each build
    fcntl = None

CACHE_VERSION = 1
CACHE_FOLDER = "mtrec-cache"
META = "meta.json"
# name -> (dtype, shape of one row)
ARRAYS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "search_id": (np.dtype(np.int64), ()),
    "categorical": (np.dtype(np.int32), (len(CATEGORICAL_COLUMNS),)),
    "numerical": (np.dtype(np.float32), (len(NUMERICAL_COLUMNS),)),
    "labels": (np.dtype(np.uint8), (len(LABEL_COLUMNS),)),
}
_CLAMPED = "categorical.clamped-{key}.npy"


@dataclass(frozen=True)
class CachedSplit:
    """One processed file, memory-mapped.

    Attributes:
        csv: the processed CSV the cache was built from.
        folder: the cache folder.
        table: categorical (N, 16) int32, numerical (N, 63) float32, labels (N, 2) uint8, all
            read-only memory maps.
        search_id: (N,) int64 memory map.
        categorical_max: each field's largest id, recorded when the cache was built, so that
            vocabularies need no pass over the arrays.
        meta: the contents of ``meta.json``.
    """

    csv: Path
    folder: Path
    table: MultiTaskTable
    search_id: np.ndarray
    categorical_max: tuple[int, ...]
    meta: dict


def cache_folder(csv: Path) -> Path:
    """Where the cache of ``csv`` lives: ``<csv's folder>/mtrec-cache/<csv's stem>/``."""
    return csv.parent / CACHE_FOLDER / csv.stem


def _fingerprint(csv: Path) -> dict[str, int]:
    status = csv.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


class NpyWriter:
    """Appends rows to a ``.npy`` file whose row count is known only at the end.

    The data goes to ``<path>.tmp-<pid>`` after a header reserved for a huge row count; ``finish``
    writes the true header (NumPy pads every header to a multiple of 64 bytes, so it is the same
    length) and renames the file to ``path``.
    """

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.rows = 0
        self.temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        self._reserved = len(_header(self.dtype, (10**15, *row_shape)))
        self._handle = open(self.temporary, "wb")
        self._handle.write(b"\0" * self._reserved)

    def append(self, rows: np.ndarray) -> None:
        """Write (n, *row_shape) rows."""
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"expected rows of shape {self.row_shape}, got {rows.shape[1:]}")
        self._handle.write(np.ascontiguousarray(rows, dtype=self.dtype).data)
        self.rows += len(rows)

    def finish(self) -> None:
        header = _header(self.dtype, (self.rows, *self.row_shape))
        if len(header) != self._reserved:  # only for row counts beyond 10**15
            raise RuntimeError(f"npy header length changed ({len(header)} != {self._reserved})")
        self._handle.seek(0)
        self._handle.write(header)
        self._handle.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self._handle.close()
        self.temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively: one builder at a time, across processes."""
    if fcntl is None:
        yield
        return
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_current(csv: Path, folder: Path) -> CachedSplit | None:
    """The cache in ``folder`` if it is complete and was built from ``csv`` as it is now."""
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("source") != _fingerprint(csv):
        return None
    arrays = {}
    for name, (dtype, row_shape) in ARRAYS.items():
        try:
            array = np.load(folder / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError):
            return None
        if array.dtype != dtype or array.shape != (meta["rows"], *row_shape):
            return None
        arrays[name] = array
    table = MultiTaskTable(categorical=arrays["categorical"], numerical=arrays["numerical"], labels=arrays["labels"])
    return CachedSplit(csv, folder, table, arrays["search_id"], tuple(meta["categorical_max"]), meta)


def build_cache(csv: Path, folder: Path, *, chunk_bytes: int = CHUNK_BYTES, progress: bool = True) -> None:
    """Read ``csv`` (checked, in pieces) into the cache arrays in ``folder``.

    Raises ``DataError`` for a bad file, leaving no cache behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)  # from here on the old cache is invalid
    # Free the old arrays' disk before writing new ones (a process mapping them keeps its copy).
    for stale in [*folder.glob(_CLAMPED.format(key="*")), *(folder / f"{name}.npy" for name in ARRAYS)]:
        stale.unlink(missing_ok=True)
    source = _fingerprint(csv)
    writers = {name: NpyWriter(folder / f"{name}.npy", dtype, shape) for name, (dtype, shape) in ARRAYS.items()}
    categorical_max = np.full(len(CATEGORICAL_COLUMNS), -1, dtype=np.int64)
    label_sums = np.zeros(len(LABEL_COLUMNS), dtype=np.int64)
    bar = tqdm(
        total=source["size"], unit="B", unit_scale=True, desc=f"caching {csv.name}", disable=None if progress else True, leave=False
    )
    try:
        for chunk in read_processed_chunks(csv, chunk_bytes):
            for name, writer in writers.items():
                writer.append(getattr(chunk, name))
            categorical_max = np.maximum(categorical_max, chunk.categorical.max(axis=0))
            label_sums += chunk.labels.sum(axis=0, dtype=np.int64)
            bar.update(chunk.text_bytes)
        for writer in writers.values():
            writer.finish()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        bar.close()
    rows = writers["labels"].rows
    meta = {
        "version": CACHE_VERSION,
        "source": source,
        "rows": rows,
        "categorical_max": [int(m) for m in categorical_max],
        "label_counts": dict(zip(LABEL_COLUMNS, (int(s) for s in label_sums))),
    }
    write_json(folder / META, meta)


def open_split(csv: str | os.PathLike, *, progress: bool = True) -> CachedSplit:
    """``csv`` (processed layout) as memory-mapped arrays, building or rebuilding its cache if needed."""
    csv = Path(csv)
    if not csv.is_file():
        raise DataError(csv, "file not found")
    folder = cache_folder(csv)
    split = _open_current(csv, folder)
    if split is not None:
        return split
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the cache folder {folder} ({error.strerror}); the dataset's folder must be writable") from None
    with _locked(folder):
        split = _open_current(csv, folder)  # another process may have built it while this one waited
        if split is None:
            build_cache(csv, folder, progress=progress)
            split = _open_current(csv, folder)
    if split is None:
        raise UserError(f"{csv} changed while its cache was being built; run again")
    return split


def clamp_split(split: CachedSplit, limits: np.ndarray) -> CachedSplit:
    """``split`` with each field's ids capped at ``limits`` (F,), still memory-mapped.

    Returns ``split`` itself when no id exceeds its limit; otherwise the capped ids are written
    once, in pieces, to ``categorical.clamped-<key>.npy`` beside the cache (``key`` names the limits,
    so a new training vocabulary makes a new file) and mapped from there.
    """
    limits = np.asarray(limits, dtype=np.int64)
    if (np.asarray(split.categorical_max) <= limits).all():
        return split
    key = hashlib.sha1(limits.astype("<i8").tobytes()).hexdigest()[:16]
    path = split.folder / _CLAMPED.format(key=key)
    categorical = split.table.categorical
    with _locked(split.folder):
        try:
            clamped = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            clamped = None
        if clamped is None or clamped.shape != categorical.shape:
            for stale in split.folder.glob(_CLAMPED.format(key="*")):
                stale.unlink()
            writer = NpyWriter(path, categorical.dtype, categorical.shape[1:])
            try:
                step = 1 << 20
                for start in range(0, len(categorical), step):
                    writer.append(np.minimum(categorical[start : start + step], limits.astype(categorical.dtype)))
                writer.finish()
            except BaseException:
                writer.abort()
                raise
            clamped = np.load(path, mmap_mode="r")
    return replace(split, table=replace(split.table, categorical=clamped))
