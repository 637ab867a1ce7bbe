"""Runs grouped per dataset and model: per-task metrics over seeds, the best, the ties, the speed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mtreclib.models import list_models
from mtreclib.comparison.runs import Run
from mtreclib.comparison.settings import comparable
from mtreclib.comparison.stats import Spread, indistinguishable, spread


@dataclass(frozen=True)
class Metric:
    """A per-task test metric of the table."""

    key: str
    label: str
    higher_is_better: bool


METRICS = (Metric("auc", "AUC", True), Metric("logloss", "log-loss", False))


@dataclass(frozen=True)
class Cell:
    """One model's value of one metric of one task, over seeds.

    Attributes:
        best: the best mean of the column (several when they tie exactly).
        tie: not the best, but not distinguishable from it (``stats.indistinguishable``).
    """

    spread: Spread
    best: bool = False
    tie: bool = False


@dataclass(frozen=True)
class ModelRow:
    """One model on one dataset."""

    model: str
    seeds: tuple[int | None, ...]
    cells: dict[tuple[str, str], Cell]  # (task, metric key) -> cell
    samples_per_second: Spread
    epoch_seconds: Spread
    epochs_run: Spread
    best_epoch: Spread
    parameters: int | None
    history: tuple[list[dict[str, Any]], ...]  # per seed, the per-epoch records


@dataclass(frozen=True)
class DatasetTable:
    """Every model on one dataset, plus the oracle where the data knows its true probabilities."""

    dataset: str
    tasks: tuple[str, ...]
    rows: tuple[ModelRow, ...]
    oracle: dict[str, dict[str, float]] | None

    def row(self, model: str) -> ModelRow:
        return next(row for row in self.rows if row.model == model)


def model_order(models: Sequence[str]) -> list[str]:
    """Registry order (the README's), then any other names alphabetically."""
    known = [name for name in list_models() if name in models]
    return known + sorted(set(models) - set(known))


def _values(runs: Sequence[Run], task: str, key: str) -> Spread:
    return spread(run.tasks.get(task, {}).get(key) for run in runs)


def _epoch_seconds(run: Run) -> float | None:
    seconds, epochs = run.result.get("train_seconds"), run.result.get("epochs_run")
    return seconds / epochs if seconds is not None and epochs else None


def _row(model: str, runs: Sequence[Run], tasks: Sequence[str]) -> ModelRow:
    return ModelRow(
        model=model,
        seeds=tuple(run.seed for run in runs),
        cells={(task, metric.key): Cell(_values(runs, task, metric.key)) for task in tasks for metric in METRICS},
        samples_per_second=spread(run.result.get("train_samples_per_sec") for run in runs),
        epoch_seconds=spread(_epoch_seconds(run) for run in runs),
        epochs_run=spread(run.result.get("epochs_run") for run in runs),
        best_epoch=spread(run.result.get("best_epoch") for run in runs),
        parameters=runs[0].result.get("parameters"),
        history=tuple(run.result.get("history", []) for run in runs),
    )


def _mark(rows: list[ModelRow], task: str, metric: Metric) -> list[ModelRow]:
    """The rows with this column's best and its ties marked."""
    key = (task, metric.key)
    means = [row.cells[key].spread.mean for row in rows]
    finite = [m for m in means if not math.isnan(m)]
    if not finite:
        return rows
    best_mean = max(finite) if metric.higher_is_better else min(finite)
    best_rows = [row for row, m in zip(rows, means) if m == best_mean]
    marked = []
    for row, mean in zip(rows, means):
        cell = row.cells[key]
        best = mean == best_mean
        tie = not best and any(indistinguishable(cell.spread, b.cells[key].spread) for b in best_rows)
        marked.append(_with_cell(row, key, Cell(cell.spread, best=best, tie=tie)))
    return marked


def _with_cell(row: ModelRow, key: tuple[str, str], cell: Cell) -> ModelRow:
    return replace(row, cells={**row.cells, key: cell})


def _oracle(runs: Sequence[Run], tasks: Sequence[str]) -> dict[str, dict[str, float]] | None:
    """Mean oracle metrics (the same in every run of a dataset, since the data seed is fixed)."""
    with_oracle = [run.result["oracle"] for run in runs if run.result.get("oracle")]
    if not with_oracle:
        return None
    return {
        task: {metric.key: spread(o.get(task, {}).get(metric.key) for o in with_oracle).mean for metric in METRICS}
        for task in tasks
    }


def build_tables(runs: Sequence[Run]) -> list[DatasetTable]:
    """One table per dataset (alphabetical), models in registry order."""
    tables = []
    for dataset in sorted({run.dataset for run in runs}):
        of_dataset = [run for run in runs if run.dataset == dataset]
        tasks = tuple(dict.fromkeys(task for run in of_dataset for task in run.tasks))
        rows = [
            _row(model, sorted((r for r in of_dataset if r.model == model), key=lambda r: (r.seed is None, r.seed or 0)), tasks)
            for model in model_order({run.model for run in of_dataset})
        ]
        for task in tasks:
            for metric in METRICS:
                rows = _mark(rows, task, metric)
        tables.append(DatasetTable(dataset, tasks, tuple(rows), _oracle(of_dataset, tasks)))
    return tables


def shared_settings(runs: Sequence[Run]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The settings every run shares, and those that differ between runs (with their values).

    Model, dataset and seed are what a benchmark varies on purpose and are left out.
    """
    varied = {"model", "dataset", "train.seed"}
    flats = [comparable(run.result.get("config", {})) for run in runs]
    keys = sorted({key for flat in flats for key in flat} - varied)
    shared, differing = {}, {}
    for key in keys:
        values = sorted({repr(flat.get(key)) for flat in flats})
        if len(values) == 1:
            shared[key] = flats[0].get(key)
        else:
            differing[key] = values
    return shared, differing


def machines(runs: Sequence[Run]) -> list[str]:
    """Each distinct machine and device the runs ran on, in words."""
    seen = {}
    for run in runs:
        info = run.result.get("machine") or {}
        device = run.result.get("device", "?")
        where = info.get("gpu") if device.startswith("cuda") else info.get("cpu")
        words = f"{device} ({where}, {info.get('cpu_count')} cores, {info.get('torch_threads')} PyTorch threads, torch {info.get('torch')})" if info else device
        seen[words] = None
    return list(seen)
