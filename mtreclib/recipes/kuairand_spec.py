"""The dataset specs (docs/dataset-spec.md) of a converted KuaiRand version, built from the column declarations.

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

from pathlib import Path

import yaml

from mtreclib.recipes.kuairand_files import Version
from mtreclib.recipes.kuairand_logs import LABELS
from mtreclib.recipes.kuairand_tables import BASIC_LAYOUT, STATISTIC_LAYOUT, USER_LAYOUT

# No `implies`: the publisher documents no label as needing a click (is_click is a click in the
# two-column UI but a "valid play" in the one-column UI), so none is declared; the recipe counts
# the rows that have a positive label without is_click and reports them.
TASKS = ("is_click", "long_view", "is_like", "is_follow", "is_comment", "is_forward", "is_profile_enter")  # is_hate: rare, by --tasks


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
        "labels": list(LABELS),
        "tasks": list(TASKS),
        "group": "user_id",
    }


def write_specs(folder: Path, dataset: str, source: str, version: Version) -> list[str]:
    """Write ``dataset.yaml`` and ``random.yaml`` of ``version`` into ``folder``; returns their names."""
    header = (
        f"# {dataset}: {version.folder} (Gao et al., CIKM 2022, https://kuairand.com/) converted by\n"
        f"# `mtrec preprocess --dataset {dataset}` (mtreclib/recipes/kuairand.py) from {source}.\n"
        "# Splits by the log's date: train 2022-04-08..04-21, valid 04-22..04-28, test 04-29..05-08.\n"
        "# The stat_* features are daily averages over the whole month, test days included.\n"
    )
    written = {
        "dataset.yaml": (
            spec(dataset, valid="valid.parquet", test="test.parquet", identity_ids=version.identity_ids),
            "# Validation and test: the standard logs.\n",
        ),
        "random.yaml": (
            spec(f"{dataset}-random", valid="random_valid.parquet", test="random_test.parquet", identity_ids=version.identity_ids),
            "# Validation and test: the randomly exposed videos of the same days (log_random_4_22_to_5_08).\n",
        ),
    }
    for file, (content, note) in written.items():
        (folder / file).write_text(header + note + yaml.safe_dump(content, sort_keys=False, default_flow_style=None, width=120))
    return list(written)
