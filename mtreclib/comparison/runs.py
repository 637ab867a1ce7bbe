"""Reading a benchmark's run files back: results, and the records of runs that failed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtreclib.errors import UserError
from mtreclib.comparison.files import read_json
from mtreclib.record import RunRecord

FAILURE_SUFFIX = ".failed.json"


@dataclass(frozen=True)
class Run:
    """One finished run: the JSON that ``mtrec benchmark`` (or ``mtrec train --results``) wrote."""

    path: Path
    result: dict[str, Any]

    @property
    def model(self) -> str:
        return self.result["model"]

    @property
    def dataset(self) -> str:
        return self.result["dataset"]

    @property
    def seed(self) -> int | None:
        return self.result.get("seed", self.result.get("config", {}).get("train", {}).get("seed"))

    @property
    def tasks(self) -> dict[str, dict[str, float]]:
        return self.result["tasks"]


def _check_result(path: Path, result: Any) -> dict[str, Any]:
    return RunRecord.from_dict(result, source=path).to_dict()


def load_runs(root: str | Path) -> tuple[list[Run], list[dict[str, Any]]]:
    """Every run result under ``root`` (recursively), and every failure record without a result.

    Hidden files (temporary files of an interrupted write start with a dot) are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no such folder: {root} (expected the --out folder of mtrec benchmark)")
    runs, failures = [], []
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.name.endswith(FAILURE_SUFFIX):
            result_path = path.with_name(path.name[: -len(FAILURE_SUFFIX)] + ".json")
            if not result_path.exists():
                failures.append({**read_json(path), "path": str(path)})
            continue
        runs.append(Run(path, _check_result(path, read_json(path))))
    if not runs:
        raise UserError(f"no run results under {root}; run mtrec benchmark --out {root} first")
    return runs, failures
