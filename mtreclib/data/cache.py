"""A memory-mapped cache of a spec's dataset, built once, so that the next run starts in seconds.

Layout: beside the spec (``<folder>/dataset.yaml``, or the built-in layout's ``train.csv``) the
cache is ``<folder>/mtrec-cache/<spec name>/``; with ``--cache-dir DIR``, or when ``<folder>``
cannot be written (a read-only dataset), ``DIR/<folder's name>-<hash of its path>/<spec name>/``,
``DIR`` being by default the user's cache folder (``$XDG_CACHE_HOME/mtreclib``, else
``~/.cache/mtreclib``):

    meta.json        the spec's fingerprint, every source's size and mtime, rows and statistics per split
    encoders.json    the fitted encoders (vocabularies, transforms): what prediction needs too
    train/           one folder per split:
      categorical.npy  (N, F)  int32      single-valued ids
      numerical.npy    (N, M)  float32
      labels.npy       (N, T)  uint8      every label of the spec (float32 when one is a regression target)
      probabilities.npy (N, T) float64    each label's true probability (when the spec names them)
      weights.npy      (N,)    float32    sample weights (when the spec names them)
      group.npy        (N,)    int64      group ids (when the spec names them)
      bag<k>.values.npy (V,)   int32      multi-valued field k: every row's ids, flat
      bag<k>.offsets.npy (N+1,) int64     row i's ids are values[offsets[i]:offsets[i+1]]
      bag<k>.weights.npy (V,)  float32    their weights (when the spec names them)
    valid/, test/

Why row-major ``.npy`` files opened with ``np.load(mmap_mode="r")`` and not Arrow IPC: batches
gather whole rows at random positions, so each array is stored row-major, one contiguous record
per row; ``torch.from_numpy`` wraps the maps without a copy, pages are read on demand and
shared between processes (one per GPU), and any NumPy user can open the files. Multi-valued
fields are flat values plus offsets, never padded to the longest row.

When it is rebuilt: ``meta.json`` records the cache version, the spec's fingerprint (what it
says) and every source file's size and modification time (nanoseconds); any difference
rebuilds. A cache of an older layout (version 1, ``mtrec-cache/train/``) is removed and rebuilt,
never misread.

Writing is crash- and race-safe: the cache is built in a temporary folder and renamed into place
when complete, and a lock file makes concurrent processes (``torchrun`` ranks) wait for one
builder instead of all building. A bad file leaves no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.atomic import write_errors, write_json, write_probe
from mtreclib.core.errors import DataError, UserError
from mtreclib.core.progress import Progress, note
from mtreclib.core.schema import Bag
from mtreclib.data.encoders import Encoders
from mtreclib.data.encoding import Place, normalise_ids, splitmix64
from mtreclib.data.sources import Chunk, check_columns, read_chunks
from mtreclib.data.spec import DatasetSpec
from mtreclib.data.table import MultiTaskTable

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first runs would each build
    fcntl = None

CACHE_VERSION = 2
CACHE_FOLDER = "mtrec-cache"
META = "meta.json"
ENCODERS = "encoders.json"
LENGTH_BINS = 1024  # multi-valued lengths are counted exactly up to this, for the statistics


def cache_folder(spec: DatasetSpec, base: Path) -> Path:
    """Where the cache of ``spec`` lives: ``<base>/mtrec-cache/<spec file's stem, or the spec's name>/``."""
    return _in_root(spec, base / CACHE_FOLDER)


def _in_root(spec: DatasetSpec, root: Path) -> Path:
    return root / (spec.path.stem if spec.path is not None else spec.name)


def user_cache_dir() -> Path:
    """The user's cache folder for mtreclib: ``$XDG_CACHE_HOME/mtreclib``, else ``~/.cache/mtreclib``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtreclib"


def outside_root(base: Path, cache_dir: Path) -> Path:
    """Where the caches of the datasets of folder ``base`` go under ``cache_dir``: a folder per
    dataset folder (its name, readable, and a hash of its absolute path, unique: every folder's
    spec is ``dataset.yaml``)."""
    where = base.resolve()
    return cache_dir / f"{where.name or 'root'}-{hashlib.sha256(str(where).encode()).hexdigest()[:12]}"


class NpyWriter:
    """Appends rows to a ``.npy`` file whose row count is known only at the end.

    The data goes after a header reserved for a huge row count; ``finish`` writes the true
    header (NumPy pads every header to a multiple of 64 bytes, so it is the same length).
    """

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.rows = 0
        self._reserved = len(_header(self.dtype, (10**15, *row_shape)))
        self._handle = open(path, "wb")
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

    def close(self) -> None:
        self._handle.close()


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return buffer.getvalue()


class SplitWriter:
    """Writes one split's encoded chunks to its folder, and counts what ``mtrec inspect`` shows."""

    def __init__(self, folder: Path, encoders: Encoders):
        folder.mkdir(parents=True)
        spec = encoders.spec
        self.folder = folder
        self.writers = {
            "categorical": NpyWriter(folder / "categorical.npy", np.int32, (len(encoders.categorical),)),
            "numerical": NpyWriter(folder / "numerical.npy", np.float32, (len(encoders.numerical),)),
            "labels": NpyWriter(folder / "labels.npy", spec.label_dtype, (len(encoders.labels),)),
        }
        if any(label.probability for label in spec.labels):
            self.writers["probabilities"] = NpyWriter(folder / "probabilities.npy", np.float64, (len(encoders.labels),))
        if spec.sample_weight:
            self.writers["weights"] = NpyWriter(folder / "weights.npy", np.float32, ())
        if spec.group:
            self.writers["group"] = NpyWriter(folder / "group.npy", np.int64, ())
        for k, bag in enumerate(encoders.bags):
            self.writers[f"bag{k}.values"] = NpyWriter(folder / f"bag{k}.values.npy", np.int32, ())
            self.writers[f"bag{k}.offsets"] = NpyWriter(folder / f"bag{k}.offsets.npy", np.int64, ())
            self.writers[f"bag{k}.offsets"].append(np.zeros(1, np.int64))
            if bag.spec.weights:
                self.writers[f"bag{k}.weights"] = NpyWriter(folder / f"bag{k}.weights.npy", np.float32, ())
        for table in spec.tables:
            self.writers[f"side-{table}.rows"] = NpyWriter(folder / f"side-{table}.rows.npy", np.int32, ())
        self.totals = [0] * len(encoders.bags)
        self.side_lengths: dict[int, list[np.ndarray]] = {k: [] for k, e in enumerate(encoders.bags) if e.spec.table is not None}
        self.stats: dict[str, Any] = {
            "rows": 0,
            # Per label, its positives; for a regression target, the sum of its (transformed) values.
            "positives": np.zeros(len(encoders.labels), np.int64 if spec.label_dtype == np.uint8 else np.float64),
            "zero_ids": np.zeros(len(encoders.categorical), np.int64),  # ids of the unknown slot (missing values included)
            "missing": np.zeros(len(encoders.categorical), np.int64),
            "numerical_missing": np.zeros(len(encoders.numerical), np.int64),
            "bag_zero_ids": np.zeros(len(encoders.bags), np.int64),
            "bag_lengths": [np.zeros(LENGTH_BINS + 1, np.int64) for _ in encoders.bags],
        }
        self.encoders = encoders

    def _append_bag(self, k: int, bag: Bag) -> None:
        """A compact bag's rows after those written: its offsets moved past the values before them."""
        w = self.writers
        w[f"bag{k}.values"].append(bag.values)
        w[f"bag{k}.offsets"].append(bag.offsets[1:] + self.totals[k])
        self.totals[k] += len(bag.values)
        if bag.weights is not None:
            w[f"bag{k}.weights"].append(bag.weights)
        self.stats["bag_zero_ids"][k] += int((bag.values == 0).sum())

    def append_side(self, bags: dict[int, Bag]) -> None:
        """Rows of a side table: its fields' values, stored once however many rows share them."""
        for k, bag in bags.items():
            self._append_bag(k, bag)
            self.side_lengths[k].append(bag.lengths())

    def append(self, encoded: MultiTaskTable, side_rows: dict[str, np.ndarray], missing: tuple[list[int], list[int]]) -> None:
        """Encoded rows (their side-table fields None), each row's side-table rows, the chunk's missing values."""
        w, stats = self.writers, self.stats
        for table, rows in (side_rows or {}).items():
            w[f"side-{table}.rows"].append(rows)
            for k in self.encoders.side_bags(table):
                lengths = np.concatenate(self.side_lengths[k])[rows] if len(self.side_lengths[k]) != 1 else self.side_lengths[k][0][rows]
                stats["bag_lengths"][k] += np.bincount(np.minimum(lengths, LENGTH_BINS), minlength=LENGTH_BINS + 1)
        w["categorical"].append(encoded.categorical)
        w["numerical"].append(encoded.numerical)
        w["labels"].append(encoded.labels)
        if "probabilities" in w:
            w["probabilities"].append(encoded.probabilities)
        if "weights" in w:
            w["weights"].append(encoded.weights)
        if "group" in w:
            w["group"].append(encoded.group)
        for k, bag in enumerate(encoded.bags):
            if bag is None:
                continue  # kept in a side table: written by append_side
            self._append_bag(k, bag)
            stats["bag_lengths"][k] += np.bincount(np.minimum(bag.lengths(), LENGTH_BINS), minlength=LENGTH_BINS + 1)
        stats["rows"] += len(encoded)
        stats["positives"] += encoded.labels.sum(axis=0, dtype=stats["positives"].dtype)
        stats["zero_ids"] += (encoded.categorical == unknown_ids(self.encoders)).sum(axis=0)
        stats["missing"] += np.asarray(missing[0], np.int64).reshape(-1)[: len(stats["missing"])]
        stats["numerical_missing"] += np.asarray(missing[1], np.int64).reshape(-1)[: len(stats["numerical_missing"])]

    def finish(self) -> dict[str, Any]:
        for writer in self.writers.values():
            writer.finish()
        return _plain(self.stats)

    def side_stats(self) -> None:
        """Compact the side tables' lengths once they are complete (one array per field)."""
        self.side_lengths = {k: [np.concatenate(parts)] if parts else [np.zeros(0, np.int64)] for k, parts in self.side_lengths.items()}

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def unknown_ids(encoders: Encoders) -> np.ndarray:
    """(F,) the id of each single-valued field's out-of-vocabulary slot: 0, or the last one for identity ids."""
    return np.array([e.vocab_size - 1 if e.kind == "identity" else 0 for e in encoders.categorical], dtype=np.int64)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class SplitAssigner:
    """Cuts one source into train, valid and test by the spec's rule, the same whatever the chunking.

    ``random``: row ``r`` (counted over the source files in order) draws a fixed uniform number
    from (seed, r); the first ``test`` share of [0, 1) is test, the next ``valid`` share valid.
    ``ordered``: rows whose ordering value is at least the cut of the last ``test`` share are test
    (ties at the cut go to test, so the share can exceed ``test`` slightly), those at least the
    cut of the ``valid`` share before it are valid.
    """

    NAMES = ("train", "valid", "test")

    def __init__(self, spec: DatasetSpec, *, progress: bool = True):
        self.rule = spec.split
        self.cuts: tuple[float, float] | None = None
        if self.rule.method == "ordered":
            self.cuts = _ordered_cuts(spec, progress)

    def codes(self, chunk: Chunk, first_row: int) -> np.ndarray:
        """(n,) 0 train, 1 valid, 2 test for the chunk's rows (``first_row``: the chunk's position in the source)."""
        rule = self.rule
        if self.cuts is None:
            rows = np.arange(first_row, first_row + len(chunk), dtype=np.uint64)
            uniform = (splitmix64(rows ^ (np.uint64(rule.seed) << np.uint64(40))) >> np.uint64(11)).astype(np.float64) / 2.0**53
            return np.where(uniform < rule.test, 2, np.where(uniform < rule.test + rule.valid, 1, 0)).astype(np.int8)
        values = _order_values(chunk, rule.column)
        valid_cut, test_cut = self.cuts
        return np.where(values >= test_cut, 2, np.where(values >= valid_cut, 1, 0)).astype(np.int8)


def _order_values(chunk: Chunk, column: str) -> np.ndarray:
    array = chunk.table.column(column).combine_chunks()
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        array = array.cast(pa.int64())
    values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    bad = np.isnan(values)
    if bad.any():
        raise chunk.place.error(int(bad.argmax()), column, "missing value in the column that orders the split")
    return values


def _ordered_cuts(spec: DatasetSpec, progress: bool) -> tuple[float, float]:
    """The ordering column's values at the starts of the valid and test shares (one pass over that column)."""
    rule = spec.split
    parts = []
    with Progress(None, "ordering", enabled=progress, unit="row") as bar:
        for chunk in read_chunks(spec, spec.splits["source"]):
            parts.append(_order_values(chunk, rule.column))
            bar.update(len(chunk))
    values = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
    n = len(values)
    if n == 0:
        raise DataError(spec.splits["source"][0], "no data rows")
    test_start = n - max(1, math.ceil(n * rule.test))
    valid_start = test_start - (math.ceil(n * rule.valid) if rule.valid > 0 else 0)
    return float(values[max(valid_start, 0)]) if rule.valid > 0 else math.inf, float(values[test_start])


def _fingerprint(spec: DatasetSpec) -> dict[str, Any]:
    sources = {}
    for path in spec.files():
        status = path.stat()
        sources[str(path)] = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
    return {"version": CACHE_VERSION, "spec": spec.fingerprint(), "sources": sources}


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively: one builder at a time, across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _subset(chunk: Chunk, mask: np.ndarray) -> Chunk:
    """The rows of ``chunk`` where ``mask`` holds, with error positions still those of the file."""
    return Chunk(chunk.table.filter(pa.array(mask)), chunk.place.subset(np.flatnonzero(mask)))


def _chunks_by_split(
    spec: DatasetSpec, assigner: SplitAssigner | None, wanted: tuple[str, ...], read: dict[str, Any]
) -> Iterator[tuple[str, Chunk]]:
    """(split, chunk) for the wanted splits: each split's files, or the source cut by the rule."""
    if assigner is None:
        for name in wanted:
            for chunk in read_chunks(spec, spec.splits[name], **read):
                yield name, chunk
        return
    row = 0
    for chunk in read_chunks(spec, spec.splits["source"], **read):
        codes = assigner.codes(chunk, row)
        row += len(chunk)
        for code, name in enumerate(SplitAssigner.NAMES):
            if name not in wanted:
                continue
            mask = codes == code
            if mask.all():
                yield name, chunk
            elif mask.any():
                yield name, _subset(chunk, mask)


class MemoryWriter:
    """Collects one split's encoded chunks in memory (small data, tests, the no-cache comparison)."""

    def __init__(self, encoders: Encoders):
        self.encoders = encoders
        self.parts: list[MultiTaskTable] = []
        self.side: dict[int, list[Bag]] = {}
        self.side_rows: dict[str, list[np.ndarray]] = {}

    def append(self, encoded: MultiTaskTable, side_rows: dict[str, np.ndarray], missing: tuple[list[int], list[int]]) -> None:
        self.parts.append(encoded)
        for table, rows in side_rows.items():
            self.side_rows.setdefault(table, []).append(rows)

    def append_side(self, bags: dict[int, Bag]) -> None:
        for k, bag in bags.items():
            self.side.setdefault(k, []).append(bag)

    def side_stats(self) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        return {"rows": sum(len(p) for p in self.parts)}

    def close(self) -> None:
        pass

    def table(self) -> MultiTaskTable:
        parts = self.parts

        def stack(key: str) -> np.ndarray | None:
            arrays = [getattr(p, key) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        bags, side_rows = [], []
        for k, encoder in enumerate(self.encoders.bags):
            table = encoder.spec.table
            bags.append(Bag.concat(self.side.get(k, []) if table is not None else [p.bags[k] for p in parts]))
            side_rows.append(np.concatenate(self.side_rows[table]) if table is not None else None)
        return MultiTaskTable(
            stack("categorical"),
            stack("numerical"),
            stack("labels"),
            probabilities=stack("probabilities"),
            bags=tuple(bags),
            side_rows=tuple(side_rows) if any(rows is not None for rows in side_rows) else (),
            weights=stack("weights"),
            group=stack("group"),
        )


def encode_splits(spec: DatasetSpec, make_writer: Any, *, progress: bool = True, chunk_bytes: int | None = None) -> tuple[Encoders, dict[str, Any]]:
    """Fit the encoders on the training rows (when they need it), then encode every split into
    ``make_writer(split, encoders)``; returns the fitted encoders and each writer's statistics."""
    read = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    check_columns(spec)
    assigner = SplitAssigner(spec, progress=progress) if spec.split is not None else None
    encoders = Encoders.for_spec(spec)
    fitted = encoders.needs_fit_pass or assigner is not None
    if fitted:
        fitter = encoders.fitter()
        with Progress(None, "fitting on train", enabled=progress, unit="row") as bar:
            for _, chunk in _chunks_by_split(spec, assigner, ("train",), read):
                fitter.add(chunk.table, chunk.place)
                bar.update(len(chunk))
            for table in spec.tables:
                for chunk in read_chunks(spec, _side_files(spec, table, "train"), columns=spec.table_columns(table), **read):
                    fitter.add_side(table, chunk.table, chunk.place)
                    bar.update(len(chunk))
        encoders = fitter.fitted()
    # Without a fitting pass the identity ids' training maximum is tracked while train is encoded,
    # which is why train comes first.
    splits: dict[str, Any] = {}
    order = spec.split_names
    for group in [order] if assigner is not None else [(name,) for name in order]:
        writers = {name: make_writer(name, encoders) for name in group}
        try:
            with Progress(None, f"caching {'+'.join(group)}", enabled=progress, unit="row") as bar:
                keys = {name: _side_tables(spec, encoders, name, writers[name], read, training=name == "train" and not fitted) for name in group}
                for name, chunk in _chunks_by_split(spec, assigner, group, read):
                    encoded = encoders.encode(chunk.table, chunk.place, training=name == "train" and not fitted)
                    rows = {table: _side_rows(spec, table, keys[name][table], chunk, chunk.place) for table in spec.tables}
                    writers[name].append(encoded, rows, encoders.missing(chunk.table))
                    bar.update(len(chunk))
            for name, writer in writers.items():
                splits[name] = writer.finish()
        finally:
            for writer in writers.values():
                writer.close()
    for name in order:
        if splits[name]["rows"] == 0:
            where = spec.splits[name][0] if name in spec.splits else spec.splits["source"][0]
            raise DataError(where, f"no data rows in the {name} split")
    return encoders, splits


def _side_files(spec: DatasetSpec, table: str, split: str) -> tuple[Path, ...]:
    files = spec.tables[table][1]
    return files["source"] if "source" in files else files[split]


def _side_tables(spec: DatasetSpec, encoders: Encoders, split: str, writer: Any, read: dict[str, Any], *, training: bool) -> dict[str, Any]:
    """Encode the split's side tables into ``writer``; returns each table's keys, in row order."""
    found = {}
    for table, (side, _) in spec.tables.items():
        keys, files = [], _side_files(spec, table, split)
        for chunk in read_chunks(spec, files, columns=spec.table_columns(table), **read):
            writer.append_side(encoders.encode_side(table, chunk.table, chunk.place, training=training))
            key = chunk.table.column(side.key).combine_chunks()
            if key.null_count:
                raise chunk.place.error(int(key.is_null().to_numpy(zero_copy_only=False).argmax()), side.key, "missing key")
            keys.append(normalise_ids(key, chunk.place, side.key))
        writer.side_stats()
        merged = pa.concat_arrays(keys) if keys else pa.array([], pa.int64())
        counts = pc.value_counts(merged)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        if len(repeated):
            raise DataError(files[0], f"key {repeated[0].as_py()!r} is on more than one row of side table {table!r}; a key names one row", column=side.key)
        found[table] = merged
    return found


def _side_rows(spec: DatasetSpec, table: str, keys: pa.Array, chunk: Chunk, place: Place) -> np.ndarray:
    """(n,) int32 each row's side-table row, found by its key; a key the table lacks is an error."""
    column = spec.tables[table][0].row_key
    row_keys = normalise_ids(chunk.table.column(column).combine_chunks(), place, column)
    if row_keys.type != keys.type:
        row_keys, keys = row_keys.cast(pa.string()), keys.cast(pa.string())
    position = pc.index_in(row_keys, value_set=keys)
    if position.null_count:
        i = int(position.is_null().to_numpy(zero_copy_only=False).argmax())
        raise place.error(i, column, f"key {row_keys[i].as_py()!r} has no row in side table {table!r}")
    return position.to_numpy(zero_copy_only=False).astype(np.int32)


def read_splits(spec: DatasetSpec, *, chunk_bytes: int | None = None) -> tuple[Encoders, dict[str, MultiTaskTable]]:
    """Every split of ``spec`` read and encoded into memory, without a cache (small data)."""
    writers: dict[str, MemoryWriter] = {}

    def make_writer(name: str, encoders: Encoders) -> MemoryWriter:
        writers[name] = MemoryWriter(encoders)
        return writers[name]

    encoders, _ = encode_splits(spec, make_writer, progress=False, chunk_bytes=chunk_bytes)
    return encoders, {name: writer.table() for name, writer in writers.items()}


def build(spec: DatasetSpec, folder: Path, *, progress: bool = True, chunk_bytes: int | None = None) -> None:
    """Read the spec's files into the cache folder ``folder`` (built beside it, renamed when complete)."""
    start = time.perf_counter()
    temporary = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        encoders, splits = encode_splits(
            spec, lambda name, enc: SplitWriter(temporary / name, enc), progress=progress, chunk_bytes=chunk_bytes
        )
        write_json(temporary / ENCODERS, encoders.to_dict())
        write_json(temporary / META, {**_fingerprint(spec), "splits": splits, "seconds": time.perf_counter() - start})
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@dataclass(frozen=True)
class CachedDataset:
    """A spec's splits as memory maps, its fitted encoders and the cache's record."""

    tables: dict[str, MultiTaskTable]
    encoders: Encoders
    meta: dict[str, Any]
    folder: Path


def _map(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _open(spec: DatasetSpec, folder: Path) -> CachedDataset | None:
    """The cache in ``folder`` if it is complete and was built from the spec and files as they are now."""
    try:
        meta = json.loads((folder / META).read_text())
        current = _fingerprint(spec)
        if {key: meta.get(key) for key in current} != current:
            return None
        encoders = Encoders.from_dict(json.loads((folder / ENCODERS).read_text()))
        encoders.spec = spec
        tables = {}
        for name, stats in meta["splits"].items():
            split = folder / name
            arrays = {key: _map(split / f"{key}.npy") for key in ("categorical", "numerical", "labels")}
            if any(len(a) != stats["rows"] for a in arrays.values()):
                return None
            bags = tuple(
                Bag(
                    _map(split / f"bag{k}.values.npy"),
                    _map(split / f"bag{k}.offsets.npy"),
                    _map(split / f"bag{k}.weights.npy") if bag.spec.weights else None,
                )
                for k, bag in enumerate(encoders.bags)
            )
            side_rows = tuple(_map(split / f"side-{bag.spec.table}.rows.npy") if bag.spec.table else None for bag in encoders.bags)
            tables[name] = MultiTaskTable(
                arrays["categorical"],
                arrays["numerical"],
                arrays["labels"],
                probabilities=_map(split / "probabilities.npy") if any(label.probability for label in spec.labels) else None,
                bags=bags,
                side_rows=side_rows if any(rows is not None for rows in side_rows) else (),
                weights=_map(split / "weights.npy") if spec.sample_weight else None,
                group=_map(split / "group.npy") if spec.group else None,
            )
        return CachedDataset(tables, encoders, meta, folder)
    except (OSError, ValueError, KeyError):
        return None


def open_cache(
    spec: DatasetSpec, base: Path, *, cache_dir: str | os.PathLike | None = None, progress: bool = True, chunk_bytes: int | None = None
) -> CachedDataset:
    """The spec's dataset as memory-mapped arrays, building or rebuilding its cache if needed.

    ``base``: the dataset's folder; the cache goes beside the spec there, or under ``cache_dir``
    when given, or under the user's cache folder when ``base`` cannot be written (a notice says so).
    """
    if cache_dir is not None:
        return _open_or_build(spec, outside_root(base, Path(cache_dir)), progress, chunk_bytes, "--cache-dir names a writable folder")
    root = base / CACHE_FOLDER
    cached = _open(spec, _in_root(spec, root))
    if cached is not None:
        return cached
    problem = write_probe(root if root.is_dir() else base)
    if problem is not None:
        root = outside_root(base, user_cache_dir())
        cached = _open(spec, _in_root(spec, root))
        if cached is not None:
            return cached
        note(f"mtrec: cannot write in {base} ({problem.strerror or problem}): the dataset's cache goes to {root} (--cache-dir chooses)")
    return _open_or_build(spec, root, progress, chunk_bytes, "give --cache-dir a writable folder")


def _open_or_build(spec: DatasetSpec, root: Path, progress: bool, chunk_bytes: int | None, advice: str) -> CachedDataset:
    folder = _in_root(spec, root)
    cached = _open(spec, folder)
    if cached is not None:
        return cached
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the cache folder {root} ({error.strerror}); {advice}") from None
    _remove_old_layout(root)
    with locked(root), write_errors(root):
        cached = _open(spec, folder)  # another process may have built it while this one waited
        if cached is None:
            build(spec, folder, progress=progress, chunk_bytes=chunk_bytes)
            cached = _open(spec, folder)
    if cached is None:
        raise UserError(f"{spec.where}: the data files changed while the cache was being built; run again")
    return cached


def _remove_old_layout(root: Path) -> None:
    """Version 1 caches (``mtrec-cache/train/meta.json`` of the AliExpress layout): removed, never misread."""
    for name in ("train", "test"):
        meta = root / name / META
        try:
            if json.loads(meta.read_text()).get("version") == 1:
                shutil.rmtree(root / name, ignore_errors=True)
        except (OSError, ValueError):
            continue
