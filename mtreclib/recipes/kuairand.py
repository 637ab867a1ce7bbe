"""KuaiRand (Gao et al., "KuaiRand: An Unbiased Sequential Recommendation Dataset with Randomly
Exposed Videos", CIKM 2022, https://kuairand.com/) to Parquet splits and a dataset spec.

One recipe for the publisher's three versions, which share their layout (kuairand_files.py):
``KuaiRandPure`` (``KuaiRand-Pure.tar.gz``), ``KuaiRand1K`` (``KuaiRand-1K.tar.gz``) and
``KuaiRand27K`` (``KuaiRand-27K.tar.gz``). ``mtrec preprocess --dataset KuaiRandPure --data-dir DIR``
reads the archive (or its unpacked ``data/`` folder) in ``DIR`` or ``DIR/KuaiRandPure/`` and
writes ``DIR/KuaiRandPure/``:

- ``train.parquet``, ``valid.parquet``, ``test.parquet``: the two standard logs (what Kuaishou's
  recommender showed), split by date (kuairand_logs.py), each row joined to its user's and video's
  features; ``dataset.yaml`` describes them;
- ``random_train.parquet``, ``random_valid.parquet``, ``random_test.parquet``: the log of randomly
  exposed videos, split by the same dates and joined the same way. It is a different exposure
  policy, so it stays out of the default splits; ``random.yaml`` trains on the standard training
  split and validates and tests on it (the random log starts on 2022-04-22, so
  ``random_train.parquet`` has no rows on the real download).

The feature tables are read first (one pass over the archive) into memory-mapped files in a
scratch folder (kuairand_tables.py), then the logs (a second pass), in the order the archive
stores them. Everything is written to ``DIR/.KuaiRandPure.tmp-<pid>/`` (the scratch folder is
``DIR/.KuaiRandPure.tmp-<pid>.tables/``) and moved into place when complete: a failure leaves no
output and an earlier output untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import CHUNK_BYTES
from mtreclib.recipes import register_recipe
from mtreclib.recipes.kuairand_files import (
    PURE,
    RANDOM,
    STANDARD_EARLY,
    STANDARD_LATE,
    USERS,
    VERSIONS,
    VIDEOS_BASIC,
    VIDEOS_STATISTIC,
    Download,
    find_download,
)
from mtreclib.recipes.kuairand_logs import LABELS, LOG_CHUNK_BYTES, SPLITS, LogReport, SplitWriters, convert_log
from mtreclib.recipes.kuairand_spec import write_specs
from mtreclib.recipes.kuairand_tables import BASIC_LAYOUT, BATCH_BYTES, STATISTIC_LAYOUT, USER_LAYOUT, FeatureTable, TableBuilder

DATASET = PURE.dataset
_LAYOUTS = (USER_LAYOUT, BASIC_LAYOUT, STATISTIC_LAYOUT)
_SPLIT_DAYS = {"train": "2022-04-08..04-21", "valid": "04-22..04-28", "test": "04-29..05-08"}


def read_tables(download: Download, folder: Path, *, chunk_bytes: int = CHUNK_BYTES, batch_bytes: int = BATCH_BYTES) -> dict[str, FeatureTable]:
    """The three feature tables of ``download`` (all parts), by stem, their rows in files in ``folder``."""
    with contextlib.ExitStack() as stack:
        builders = {}
        for layout in _LAYOUTS:
            builders[layout.stem] = TableBuilder(layout, folder, chunk_bytes=chunk_bytes, batch_bytes=batch_bytes)
            stack.callback(builders[layout.stem].close)
        sources = stack.enter_context(contextlib.closing(download.open_csvs([USERS, VIDEOS_BASIC, VIDEOS_STATISTIC])))
        for source in sources:
            builders[source.stem].add(source)
        return {stem: builder.finish() for stem, builder in builders.items()}


def convert(
    data_dir: str | Path,
    name: str = DATASET,
    *,
    progress: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
    log_chunk_bytes: int = LOG_CHUNK_BYTES,
    batch_bytes: int = BATCH_BYTES,
) -> dict[str, LogReport | float | list[str]]:
    """Convert the download of dataset ``name`` (a key of ``VERSIONS``) under ``data_dir`` into ``data_dir/name/``.

    Returns what it did: ``standard`` and ``random`` (``LogReport``s), ``seconds``, ``files``
    (the names written) and ``users``/``videos`` (rows of those tables).
    """
    start = time.perf_counter()
    version = VERSIONS[name]
    data_dir = Path(data_dir)
    download = find_download(data_dir, version)
    target = data_dir / name
    temporary = data_dir / f".{name}.tmp-{os.getpid()}"
    scratch = data_dir / f".{name}.tmp-{os.getpid()}.tables"
    tables: dict[str, FeatureTable] = {}
    for folder in (temporary, scratch):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        scratch.mkdir()
        tables = read_tables(download, scratch, chunk_bytes=chunk_bytes, batch_bytes=batch_bytes)
        temporary.mkdir()
        reports = {"standard": LogReport(), "random": LogReport()}
        writers = {}
        with contextlib.ExitStack() as stack:  # closes the files whatever happens, the sources first
            for kind, prefix in (("standard", ""), ("random", "random_")):
                writers[kind] = SplitWriters({split: temporary / f"{prefix}{split}.parquet" for split in SPLITS})
                stack.callback(writers[kind].close)
            sources = stack.enter_context(contextlib.closing(download.open_csvs([STANDARD_EARLY, STANDARD_LATE, RANDOM])))
            for source in sources:
                kind = "random" if source.stem == RANDOM else "standard"
                convert_log(source, tables, writers[kind], reports[kind], chunk_bytes=log_chunk_bytes, progress=progress)
        standard = reports["standard"]
        for split in SPLITS:
            if standard.rows[split] == 0:
                raise DataError(
                    download,
                    f"{version.csv(STANDARD_EARLY)} and {version.csv(STANDARD_LATE)} have no rows dated in the {split} period "
                    f"({_SPLIT_DAYS[split]}); is this the {version.folder} download?",
                )
        files = [path.name for group in writers.values() for path in group.paths.values()]
        files += write_specs(temporary, name, str(download), version)
        _move_into_place(temporary, target, files)
        counts = {"users": len(tables[USERS].ids), "videos": len(tables[VIDEOS_BASIC].ids)}
    finally:
        tables.clear()  # the maps of the scratch files
        for folder in (temporary, scratch):
            shutil.rmtree(folder, ignore_errors=True)
    return {**reports, "seconds": time.perf_counter() - start, "files": files, **counts}


def _move_into_place(temporary: Path, target: Path, files: list[str]) -> None:
    """The finished files into ``target``: the folder renamed whole if new, else file by file.

    ``target`` may already hold the download (``DIR/KuaiRandPure/KuaiRand-Pure.tar.gz``) or an
    earlier output, so it is not replaced whole. The specs go last: once a new spec is in place,
    every file it names is new.
    """
    if not target.exists():
        os.rename(temporary, target)
        return
    for file in sorted(files, key=lambda f: f.endswith(".yaml")):
        os.replace(temporary / file, target / file)


def summary(result: dict, name: str) -> list[str]:
    """Lines for the user: rows and label rates per split, gaps in the join, time."""
    lines = []
    for kind, prefix in (("standard", ""), ("random", "random_")):
        report: LogReport = result[kind]
        for split in SPLITS:
            rows = report.rows[split]
            rates = ", ".join(f"{label} {report.positives[split][label] / rows:.4f}" for label in LABELS) if rows else "no rows"
            lines.append(f"{prefix}{split}: {rows:,} rows; {rates}")
    standard, random = result["standard"], result["random"]
    without = ", ".join(f"{label} {count:,}" for label, count in standard.without_click.items())
    lines.append(f"standard rows with a positive label but is_click 0: {without}")
    for kind, report in (("standard", standard), ("random", random)):
        if report.no_user or report.no_video or report.no_statistics:
            lines.append(
                f"{kind} rows without features (left null): {report.no_user:,} without a user row, "
                f"{report.no_video:,} without basic video features, {report.no_statistics:,} without video statistics"
            )
    rows = sum(sum(r.rows.values()) for r in (standard, random))
    seconds = result["seconds"]
    lines.append(
        f"{rows:,} log rows ({(standard.raw_bytes + random.raw_bytes) / 1e6:,.0f} MB of CSV; {result['users']:,} users, "
        f"{result['videos']:,} videos held) in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)"
    )
    lines.append(f"wrote {', '.join(result['files'])} in {name}/")
    return lines


def run(data_dir: Path, name: str, *, progress: bool = True) -> list[str]:
    """The recipe: convert, then summarise."""
    result = convert(data_dir, name, progress=progress)
    return summary(result, str(Path(data_dir) / name))


for _version in VERSIONS.values():  # one recipe per version: each has its own download
    register_recipe((_version.dataset,), _version.url)(run)
