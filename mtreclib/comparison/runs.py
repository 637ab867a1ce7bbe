"""Reading a benchmark's run files back: results as ``RunRecord``s, and the runs that failed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtreclib.comparison.files import read_json
from mtreclib.core.errors import UserError
from mtreclib.runs.record import RunRecord

FAILURE_SUFFIX = ".failed.json"
# The snapshots of a tuned benchmark's studies (``mtreclib.comparison.tuned``), not runs.
STUDIES_FOLDER = "studies"


def run_label(model: str, mto: str, *, with_strategy: bool, tuned: bool = False, study: str = "") -> str:
    """How a (model, strategy) is named in tables, plots and lists: ``mmoe + pcgrad``, or ``mmoe``;
    at a study's best settings ``mmoe (tuned)``, or ``mmoe (tuned: STUDY)`` where several studies tuned it."""
    label = f"{model} + {mto}" if with_strategy else model
    if not tuned:
        return label
    return f"{label} (tuned: {study})" if study else f"{label} (tuned)"


@dataclass(frozen=True)
class FailedRun:
    """A run that raised and left ``seed<k>.failed.json`` (written by ``runner``) but no result.

    Attributes:
        mto: the strategy; records written before strategies were an axis of the grid lack it
            and were equal-weights runs.
    """

    path: Path
    model: str
    dataset: str
    seed: int | None
    error: str
    mto: str = "ew"

    @classmethod
    def read(cls, path: Path) -> FailedRun:
        data: dict[str, Any] = read_json(path)
        if not isinstance(data, dict):
            data = {}
        return cls(
            path=path,
            model=str(data.get("model", "?")),
            dataset=str(data.get("dataset", "?")),
            seed=data.get("seed"),
            error=str(data.get("error", "?")),
            mto=str(data.get("mto", "ew")),
        )


def load_runs(root: str | Path) -> tuple[list[RunRecord], list[FailedRun]]:
    """Every run result under ``root`` (recursively), and every failure record without a result.

    Hidden files (temporary files of an interrupted write start with a dot) and the tuning
    studies' snapshots (``studies/``) are skipped. A file that is not a run's result is a
    ``DataError`` naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no such folder: {root} (expected the --out folder of mtrec benchmark)")
    runs, failures = [], []
    for path in sorted(root.rglob("*.json")):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in parts) or parts[0] == STUDIES_FOLDER:
            continue
        if path.name.endswith(FAILURE_SUFFIX):
            result_path = path.with_name(path.name[: -len(FAILURE_SUFFIX)] + ".json")
            if not result_path.exists():
                failures.append(FailedRun.read(path))
            continue
        runs.append(RunRecord.read(path))
    if not runs:
        raise UserError(f"no run results under {root}; run mtrec benchmark --out {root} first")
    return runs, failures
