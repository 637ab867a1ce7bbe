"""KuaiRand (Gao et al., "KuaiRand: An Unbiased Sequential Recommendation Dataset with Randomly
Exposed Videos", CIKM 2022, https://kuairand.com/) to Parquet splits and a dataset spec.

One recipe for the publisher's three versions, which share their layout (files.py):
``KuaiRandPure`` (``KuaiRand-Pure.tar.gz``), ``KuaiRand1K`` (``KuaiRand-1K.tar.gz``) and
``KuaiRand27K`` (``KuaiRand-27K.tar.gz``). ``mtrec preprocess --dataset KuaiRandPure --data-dir DIR``
reads the archive (or its unpacked ``data/`` folder) in ``DIR`` or ``DIR/KuaiRandPure/`` and
writes ``DIR/KuaiRandPure/``:

- ``train.parquet``, ``valid.parquet``, ``test.parquet``: the two standard logs (what Kuaishou's
  recommender showed), split by date (logs.py), each row joined to its user's and video's
  features; ``dataset.yaml`` describes them;
- ``random_train.parquet``, ``random_valid.parquet``, ``random_test.parquet``: the log of randomly
  exposed videos, split by the same dates and joined the same way. It is a different exposure
  policy, so it stays out of the default splits; ``random.yaml`` trains on the standard training
  split and validates and tests on it (the random log starts on 2022-04-22, so
  ``random_train.parquet`` has no rows on the real download).

The feature tables are read first (one pass over the archive) into memory-mapped files in the
output's scratch folder (tables.py), then the logs (a second pass), in the order the archive
stores them. Everything is written to ``DIR/.KuaiRandPure.tmp-<pid>/`` (the scratch folder is
``DIR/.KuaiRandPure.tmp-<pid>.scratch/``) and moved into place when complete: a failure leaves no
output and an earlier output untouched.

The specs, built from the column declarations: two share the training split; ``dataset.yaml``
validates and tests on the standard logs (what the production recommender showed),
``random.yaml`` on the randomly exposed videos of the same days (unbiased by the recommender's
choices), the reason KuaiRand exists.
Two specs share the training split: ``dataset.yaml`` validates and tests on the standard logs
(what the production recommender showed); ``random.yaml`` on the randomly exposed videos of the
same days (unbiased by the recommender's choices), the reason KuaiRand exists.

``user_id`` and ``video_id``: in 1K and 27K, ``vocabulary: identity``. The publisher re-indexed
both from 0 without gaps (27K: users 0..27,284, videos 0..32,038,724; 1K: users 0..999, videos
0..7,387 and 7,583..4,371,899; the README's "three-version" figure), and the log never lacks
them, so the ids are the embedding rows as they are, and the vocabulary is one number (the
largest training id) where a built one would list 4.4M or 32M values, in the dataset's cache and
in every checkpoint. Pure (7,583 videos) keeps the built vocabulary, as before.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from mtreclib.core.errors import DataError
from mtreclib.core.settings import setting
from mtreclib.data.csvchunks import CHUNK_BYTES
from mtreclib.recipes.kit import Output, Recipe, RecipeConfig, Report, register_recipe
from mtreclib.recipes.kuairand.files import (
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
from mtreclib.recipes.kuairand.logs import LABELS, LOG_CHUNK_BYTES, SCHEMA, SPLITS, convert_log
from mtreclib.recipes.kuairand.tables import BASIC_LAYOUT, BATCH_BYTES, STATISTIC_LAYOUT, USER_LAYOUT, FeatureTable, TableBuilder

_LAYOUTS = (USER_LAYOUT, BASIC_LAYOUT, STATISTIC_LAYOUT)
_SPLIT_DAYS = {"train": "2022-04-08..04-21", "valid": "04-22..04-28", "test": "04-29..05-08"}
# No `implies`: the publisher documents no label as needing a click (is_click is a click in the
# two-column UI but a "valid play" in the one-column UI), so none is declared; the recipe counts
# the rows that have a positive label without is_click and reports them.
TASKS = ("is_click", "long_view", "is_like", "is_follow", "is_comment", "is_forward", "is_profile_enter")  # is_hate: rare, by --tasks
# The play time as an optional regression task (by --tasks, never by default): in seconds, log1p-transformed.
PLAY_TIME = {"name": "play_time", "column": "play_time_ms", "type": "regression", "scale": 0.001, "transform": "log1p"}
KINDS = ("standard", "random")


def read_tables(
    download: Download, folder: Path, *, chunk_bytes: int = CHUNK_BYTES, batch_bytes: int = BATCH_BYTES, progress: bool = False, report: Report | None = None
) -> dict[str, FeatureTable]:
    """The three feature tables of ``download`` (all parts), by stem, their rows in files in ``folder``."""
    builders = {layout.stem: TableBuilder(layout, folder, chunk_bytes=chunk_bytes, batch_bytes=batch_bytes) for layout in _LAYOUTS}
    try:
        with contextlib.closing(download.open_csvs([USERS, VIDEOS_BASIC, VIDEOS_STATISTIC])) as sources:  # the archive closed whatever happens
            for source in sources:
                builders[source.stem].add(source, progress=progress, report=report)
        return {stem: builder.finish() for stem, builder in builders.items()}
    finally:
        for builder in builders.values():
            builder.close()


@dataclass(frozen=True)
class KuaiRandConfig(RecipeConfig):
    log_chunk_bytes: int = setting(LOG_CHUNK_BYTES, "bytes of log text parsed at a time (tests and tuning)", minimum=1, cli=False)
    batch_bytes: int = setting(BATCH_BYTES, "bytes of converted feature rows per record batch (tests and tuning)", minimum=1, cli=False)


@register_recipe
class KuaiRand(Recipe):
    """The three KuaiRand versions (see the module docstring)."""

    names = tuple(VERSIONS)
    labels = LABELS
    Config = KuaiRandConfig

    def __init__(self, name: str, data_dir: Path, config: KuaiRandConfig, *, progress: bool = True):
        super().__init__(name, data_dir, config, progress=progress)
        self.version = VERSIONS[name]
        self.title = f"{self.version.folder} (Gao et al., CIKM 2022, https://kuairand.com/)"

    @classmethod
    def download_page(cls, name: str) -> str:
        return VERSIONS[name].url

    def find(self) -> Download:
        return find_download(self.data_dir, self.version)

    def sources(self, download: Download) -> list[str]:
        return [str(download)]

    def convert(self, download: Download, output: Output) -> None:
        config, report = self.config, output.report
        tables = read_tables(download, output.scratch, chunk_bytes=config.chunk_bytes, batch_bytes=config.batch_bytes, progress=self.progress, report=report)
        for kind in KINDS:
            for split in SPLITS:
                output.parquet(f"{'' if kind == 'standard' else f'{kind}_'}{split}", SCHEMA, gather=False)
        with contextlib.closing(download.open_csvs([STANDARD_EARLY, STANDARD_LATE, RANDOM])) as sources:
            for source in sources:
                kind = "random" if source.stem == RANDOM else "standard"
                convert_log(source, tables, output, kind, chunk_bytes=config.log_chunk_bytes, progress=self.progress)
        version = self.version
        for split in SPLITS:
            if report.outputs[split].rows == 0:
                raise DataError(
                    download,
                    f"{version.csv(STANDARD_EARLY)} and {version.csv(STANDARD_LATE)} have no rows dated in the {split} period "
                    f"({_SPLIT_DAYS[split]}); is this the {version.folder} download?",
                )
        report.count("users", len(tables[USERS].ids))
        report.count("videos", len(tables[VIDEOS_BASIC].ids))
        tables.clear()  # the maps of the scratch files
        without = ", ".join(f"{label} {report.counts.get(f'standard_without_click_{label}', 0):,}" for label in LABELS[1:])
        report.notes.append(f"standard rows with a positive label but is_click 0: {without}")
        for kind in KINDS:
            no = {what: report.counts.get(f"{kind}_no_{what}", 0) for what in ("user", "video", "statistics")}
            if any(no.values()):
                report.notes.append(
                    f"{kind} rows without features (left null): {no['user']:,} without a user row, "
                    f"{no['video']:,} without basic video features, {no['statistics']:,} without video statistics"
                )
        report.notes.append(f"{report.counts['users']:,} users and {report.counts['videos']:,} videos held for the join")

    def specs(self, download: Download) -> dict[str, tuple[dict, str]]:
        identity = self.version.identity_ids
        header = (
            "Splits by the log's date: train 2022-04-08..04-21, valid 04-22..04-28, test 04-29..05-08.\n"
            "The stat_* features are daily averages over the whole month, test days included.\n"
        )
        return {
            "dataset.yaml": (spec(self.name, valid="valid.parquet", test="test.parquet", identity_ids=identity), header + "Validation and test: the standard logs."),
            "random.yaml": (
                spec(f"{self.name}-random", valid="random_valid.parquet", test="random_test.parquet", identity_ids=identity),
                header + "Validation and test: the randomly exposed videos of the same days (log_random_4_22_to_5_08).",
            ),
        }


def _categorical(identity_ids: bool) -> list[dict]:
    ids = {"vocabulary": "identity"} if identity_ids else {}
    entries = [
        {"name": "user_id", **ids, "role": "user"},
        {"name": "video_id", **ids, "role": "item"},
        {"name": "hour", "role": "context"},
        {"name": "tab", "role": "context"},
    ]
    for layout in (USER_LAYOUT, BASIC_LAYOUT):
        entries += [{"name": f.name, "role": f.role} for f in layout.outputs if f.kind in ("text", "code")]
    return entries


def _numerical() -> list[dict]:
    entries = [{"name": "duration_ms", "transform": "log1p"}]  # never missing in the log
    features = [f for f in USER_LAYOUT.outputs if f.kind == "count"]
    features += [f for f in BASIC_LAYOUT.outputs if f.kind == "count"]
    for feature in features:
        entries.append({"name": feature.name, "transform": "log1p", "fill": 0})
    entries.append({"name": "video_age_days", "transform": "log1p", "fill": 0})
    for feature in STATISTIC_LAYOUT.outputs:
        entries.append({"name": feature.name, "transform": "log1p" if feature.kind == "count" else "standardize", "fill": 0})
    return entries


def spec(name: str, *, valid: str, test: str, identity_ids: bool = False) -> dict:
    """The spec of dataset ``name`` with ``train.parquet`` and the given validation and test files."""
    return {
        "name": name,
        "format": "parquet",
        "train": "train.parquet",
        "valid": valid,
        "test": test,
        "categorical": _categorical(identity_ids),
        "multi_valued": [{"name": "tag", "pooling": "mean", "role": "item"}],
        "numerical": _numerical(),
        "labels": [*LABELS, PLAY_TIME],
        "tasks": list(TASKS),
        "group": "user_id",
    }
