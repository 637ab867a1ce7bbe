"""The studies of a tuned benchmark (``mtrec benchmark --tuned``): read from their databases, and
snapshotted into the benchmark's folder so that ``mtrec report`` draws their plots without the database.

``--tuned`` names studies by database (``sqlite:///runs/tune.db``, ``postgresql://...``, or the
path of an SQLite file: every study ``mtrec tune`` made there) or by name (a study in the
default database, ``sqlite:///runs/tune.db``); several, comma-separated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtreclib.comparison.files import file_stem, read_json
from mtreclib.comparison.runs import STUDIES_FOLDER
from mtreclib.core.atomic import write_json
from mtreclib.core.errors import UserError
from mtreclib.tuning.available import require_optuna
from mtreclib.tuning.config import DEFAULT_STORAGE
from mtreclib.tuning.storage import open_storage, shown, storage_url
from mtreclib.tuning.study import STUDY_ATTRIBUTE
from mtreclib.tuning.summary import StudySummary, snapshot


def _is_database(source: str) -> bool:
    return "://" in source or source.endswith(".db") or Path(source).is_file()


def load_studies(sources: Sequence[str]) -> list[tuple[StudySummary, dict[str, Any]]]:
    """Each named study's summary and snapshot; a ``UserError`` for a database that cannot be opened,
    an unknown study, or a study without a complete trial."""
    optuna = require_optuna()
    found: dict[str, tuple[StudySummary, dict[str, Any]]] = {}
    for source in sources:
        url = storage_url(source) if _is_database(source) else DEFAULT_STORAGE
        storage = open_storage(url, create=False, flag="--tuned")
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        ours = [s.study_name for s in summaries if STUDY_ATTRIBUTE in s.user_attrs]
        if _is_database(source):
            names = ours
            if not names:
                raise UserError(f"--tuned {shown(url)}: no study made by mtrec tune in this database")
        elif source in ours:
            names = [source]
        else:
            raise UserError(f"--tuned {source}: no study of that name in {shown(url)}; its studies: {', '.join(ours) or 'none'}")
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            summary = StudySummary.of(optuna, study, url)
            if name in found and found[name][0].storage != summary.storage:
                raise UserError(f"--tuned: two studies are named {name!r} ({found[name][0].storage}, {summary.storage}); benchmark them separately")
            found[name] = (summary, snapshot(optuna, study, summary))
    return list(found.values())


def snapshot_path(out: Path, study: str) -> Path:
    return out / STUDIES_FOLDER / f"{file_stem(study)}.json"


def write_snapshots(out: Path, snapshots: Sequence[dict[str, Any]]) -> None:
    for data in snapshots:
        write_json(snapshot_path(out, data["summary"]["name"]), data)


def read_snapshots(root: Path) -> list[dict[str, Any]]:
    """The study snapshots of a benchmark folder, by study name."""
    folder = root / STUDIES_FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        data = read_json(path)
        if not isinstance(data, dict) or "summary" not in data or "trials" not in data:
            raise UserError(f"{path}: not a study snapshot (expected 'summary' and 'trials', as mtrec benchmark --tuned writes)")
        found.append(data)
    return found
