"""The results of one run as a typed record, written to and read from JSON by the same class.

``mtrec train`` writes it (``results.json`` in the run folder, ``--results FILE``), ``mtrec
benchmark`` writes one per run, ``mtrec evaluate --results`` writes the same layout, and
``mtrec report`` reads them back. ``SCHEMA_VERSION`` changes when the layout does; files of
the layout before versions (version 0) are still read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtreclib.core.atomic import write_json
from mtreclib.core.errors import DataError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Metrics:
    """One task's metrics on one split: ``auc`` and ``logloss`` for a binary task, ``rmse`` and
    ``mae`` (on the target's transformed scale) for a regression task; the others None, and
    left out of the JSON.

    Attributes:
        gauc: a binary task's group AUC (``mtreclib.core.gauc``) over the data's group column;
            None when the rows have no groups.
        gauc_groups, gauc_skipped: the groups it averaged, and those left out (one class only).
    """

    auc: float | None = None
    logloss: float | None = None
    rmse: float | None = None
    mae: float | None = None
    gauc: float | None = None
    gauc_groups: int | None = None
    gauc_skipped: int | None = None

    @property
    def regression(self) -> bool:
        return self.rmse is not None

    def to_dict(self) -> dict[str, float]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        counts = ("gauc_groups", "gauc_skipped")
        return cls(**{f.name: (int if f.name in counts else float)(data[f.name]) for f in dataclasses.fields(cls) if data.get(f.name) is not None})


# The keys of a task's metrics in a results file, by the task's type.
METRIC_KEYS = ({"auc", "logloss"}, {"rmse", "mae"})


def metrics_map(data: dict[str, Any] | None) -> dict[str, Metrics] | None:
    if data is None:
        return None
    return {task: m if isinstance(m, Metrics) else Metrics.from_dict(m) for task, m in data.items()}


def _plain_metrics(data: Any) -> Any:
    """``dataclasses.asdict``'s metrics without the keys of the other task type."""
    return None if data is None else {task: {k: v for k, v in m.items() if v is not None} for task, m in data.items()}


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of training.

    Attributes:
        complete: False when ``--max-steps`` ended the epoch early (its seconds are not an
            epoch's, and the report leaves it out of seconds per epoch).
        task_weights: the strategy's last per-task weights (1 each under equal weighting).
    """

    epoch: int
    steps: int = 0
    train_loss: float = math.nan
    train_seconds: float = 0.0
    train_task_losses: dict[str, float] = field(default_factory=dict)
    task_weights: dict[str, float] = field(default_factory=dict)
    valid: dict[str, Metrics] | None = None
    valid_score: float | None = None
    complete: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["valid"] = metrics_map(data.get("valid"))
        return cls(**values)


def _mark_cut_epoch(history: tuple[EpochRecord, ...], max_steps: int | None) -> tuple[EpochRecord, ...]:
    """Version 0 did not record ``complete``: infer it. Only the last epoch can have been cut
    (reaching ``--max-steps`` ends training), and its ``steps`` (counted over the run) then
    reached ``max_steps``. With an earlier epoch to compare, it was cut when it made fewer steps
    than that one; a lone epoch that reached ``max_steps`` is taken as cut (it could have ended
    exactly there: the safe side for a time per epoch)."""
    if not history or max_steps is None or history[-1].steps < max_steps:
        return history
    if len(history) >= 2:
        full = history[0].steps
        made = history[-1].steps - history[-2].steps
        if made >= full:
            return history
    return history[:-1] + (dataclasses.replace(history[-1], complete=False),)


@dataclass(frozen=True)
class RunRecord:
    """What a run produced.

    Attributes:
        tasks: per task, the test metrics.
        oracle: per task, the metrics of the true probabilities (built-in synthetic data only).
        config: the resolved configuration (``ExperimentConfig.to_dict()``).
        checkpoint: the best checkpoint's path, or None when none was kept.
        seed: the training seed.
        run: when and how long (the benchmark records it).
        machine: where it ran (CPU, threads, PyTorch).
        sharding: the torchrec backend's plan under torchrun: per table, its sharding type and
            each process's rows, columns and bytes (empty otherwise).
        tuned: for a run of a study's best settings (``mtrec benchmark --tuned``), the study
            and the budget its search spent (``mtreclib.tuning.summary.StudySummary.to_dict``);
            None for a run at the given settings.
    """

    model: str
    dataset: str
    tasks: dict[str, Metrics]
    config: dict[str, Any]
    train_samples_per_sec: float = math.nan
    epochs_run: int = 0
    best_epoch: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    history: tuple[EpochRecord, ...] = ()
    oracle: dict[str, Metrics] | None = None
    parameters: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    device: str = ""
    world_size: int = 1
    checkpoint: str | None = None
    seed: int | None = None
    split: str = "test"
    run: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None
    sharding: list[dict[str, Any]] = field(default_factory=list)
    tuned: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def mto(self) -> str:
        return self.config.get("train", {}).get("mto", "ew")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tasks"], data["oracle"] = _plain_metrics(data["tasks"]), _plain_metrics(data["oracle"])
        for epoch in data["history"]:
            epoch["valid"] = _plain_metrics(epoch["valid"])
        return data

    def write(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: object = "results") -> RunRecord:
        if not isinstance(data, dict) or not all(key in data for key in ("model", "dataset", "tasks")):
            raise DataError(source, "expected a run result with 'model', 'dataset' and per-task 'tasks' metrics")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise DataError(source, f"results schema version {version!r}; this mtreclib reads versions up to {SCHEMA_VERSION}")
        tasks = data["tasks"]
        if not isinstance(tasks, dict) or not all(isinstance(m, dict) and any(keys <= m.keys() for keys in METRIC_KEYS) for m in tasks.values()):
            raise DataError(source, "'tasks' should map each task to its 'auc' and 'logloss' (a regression task: 'rmse' and 'mae')")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["tasks"] = metrics_map(tasks)
        values["oracle"] = metrics_map(data.get("oracle"))
        values["history"] = tuple(EpochRecord.from_dict(r) for r in data.get("history", ()))
        values["config"] = data.get("config", {})
        if version == 0 and values.get("seed") is None:
            values["seed"] = values["config"].get("train", {}).get("seed")
        if version == 0:
            values["history"] = _mark_cut_epoch(values["history"], values["config"].get("train", {}).get("max_steps"))
        values["schema_version"] = SCHEMA_VERSION
        return cls(**values)

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunRecord:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(path, f"not valid JSON: {error.msg}", line=error.lineno, column=str(error.colno)) from None
        except UnicodeDecodeError:
            raise DataError(path, "not a UTF-8 text file; expected a run's JSON") from None
        return cls.from_dict(data, source=path)
