"""Runs grouped per dataset and (model, strategy): per-task metrics over seeds, the best, the ties, the speed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mtreclib.comparison.runs import run_label
from mtreclib.comparison.stats import Spread, indistinguishable, spread
from mtreclib.config.compare import comparable
from mtreclib.config.experiment import TABLE
from mtreclib.models import list_models
from mtreclib.mto import list_strategies
from mtreclib.runs.record import EpochRecord, Metrics, RunRecord

EQUAL_WEIGHTS = "ew"


@dataclass(frozen=True)
class Metric:
    """A per-task test metric of the table (``key`` names its ``Metrics`` field)."""

    key: str
    label: str
    higher_is_better: bool

    def of(self, metrics: Metrics) -> float | None:
        return getattr(metrics, self.key)


GAUC = Metric("gauc", "GAUC", True)
METRICS = (Metric("auc", "AUC", True), GAUC, Metric("logloss", "log-loss", False))
BINARY_METRICS = tuple(metric for metric in METRICS if metric is not GAUC)  # without groups
# A regression task's metrics, on its target's transformed scale; RMSE is the one plotted.
REGRESSION_METRICS = (Metric("rmse", "RMSE", False), Metric("mae", "MAE", False))


def shown_metrics(runs: Sequence[RunRecord]) -> tuple[Metric, ...]:
    """The binary tasks' metrics of a dataset's table: GAUC only where some run has it (its data has groups)."""
    grouped = any(m.gauc is not None for run in runs for m in run.tasks.values())
    return tuple(metric for metric in METRICS if metric is not GAUC or grouped)


def metrics_of(task: str, regression: Sequence[str], binary: Sequence[Metric] = BINARY_METRICS) -> tuple[Metric, ...]:
    """A task's metrics by its type (``binary``: a binary task's): the first is the one plotted."""
    return REGRESSION_METRICS if task in regression else tuple(binary)


@dataclass(frozen=True)
class Cell:
    """One row's value of one metric of one task, over seeds.

    Attributes:
        best: the best mean of the column (several when they tie exactly).
        tie: not the best, but not distinguishable from it (``stats.indistinguishable``).
    """

    spread: Spread
    best: bool = False
    tie: bool = False


@dataclass(frozen=True)
class ModelRow:
    """One model trained with one multi-task optimisation strategy on one dataset.

    Attributes:
        label: its name in tables and plots (``mmoe + pcgrad``; ``mmoe`` when every run is ``ew``).
        epoch_seconds: per seed, the mean seconds of its complete epochs (``EpochRecord.complete``);
            seeds without a complete epoch are left out, so it may have fewer values than seeds.
        history: per seed, the per-epoch records.
        study: the tuning study whose best settings the row's runs took; empty for a row at
            the given settings.
        tuned: that study's summary (``StudySummary.to_dict``: best settings, budget), or None.
    """

    model: str
    mto: str
    label: str
    seeds: tuple[int | None, ...]
    cells: dict[tuple[str, str], Cell]  # (task, metric key) -> cell
    samples_per_second: Spread
    epoch_seconds: Spread
    epochs_run: Spread
    best_epoch: Spread
    parameters: int | None
    history: tuple[tuple[EpochRecord, ...], ...]
    study: str = ""
    tuned: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """What tells rows apart: (model, strategy), and the study for a tuned row."""
        return (self.model, self.mto, self.study) if self.study else (self.model, self.mto)


@dataclass(frozen=True)
class DatasetTable:
    """Every (model, strategy) on one dataset, plus the oracle where the data knows its true probabilities.

    ``metrics(task)``: its columns for a task, by the task's type.
    """

    dataset: str
    tasks: tuple[str, ...]
    rows: tuple[ModelRow, ...]
    oracle: dict[str, Metrics] | None
    binary_metrics: tuple[Metric, ...] = BINARY_METRICS  # a binary task's columns (``shown_metrics``)
    regression: tuple[str, ...] = ()  # the regression tasks among ``tasks``

    def metrics(self, task: str) -> tuple[Metric, ...]:
        """The task's metrics: AUC (GAUC) and log-loss, or RMSE and MAE for a regression task."""
        return metrics_of(task, self.regression, self.binary_metrics)

    def row(self, model: str, mto: str = EQUAL_WEIGHTS, study: str = "") -> ModelRow:
        return next(row for row in self.rows if (row.model, row.mto, row.study) == (model, mto, study))


def model_order(models: Sequence[str]) -> list[str]:
    """Registry order (the README's), then any other names alphabetically."""
    known = [name for name in list_models() if name in models]
    return known + sorted(set(models) - set(known))


def strategy_order(strategies: Sequence[str]) -> list[str]:
    """Registry order (``ew`` first), then any other names alphabetically."""
    known = [name for name in list_strategies() if name in strategies]
    return known + sorted(set(strategies) - set(known))


def shows_strategy(runs: Sequence[RunRecord]) -> bool:
    """Whether rows are named with their strategy: yes unless every run used equal weights."""
    return any(run.mto != EQUAL_WEIGHTS for run in runs)


def _values(runs: Sequence[RunRecord], task: str, metric: Metric) -> Spread:
    # A run may lack a task the dataset's other runs have (--tasks, --task-num): no value then.
    return spread(metric.of(run.tasks[task]) if task in run.tasks else None for run in runs)


def epoch_seconds(run: RunRecord) -> float | None:
    """Mean training seconds of the run's complete epochs; None when it has none.

    An epoch that ``--max-steps`` cut short ran only some of its steps, so its time is not an
    epoch's: counting it (or dividing the run's seconds by its epochs) understates the time.
    """
    seconds = [epoch.train_seconds for epoch in run.history if epoch.complete]
    return sum(seconds) / len(seconds) if seconds else None


def study_of(run: RunRecord) -> str:
    """The study whose best settings the run took; empty for a run at the given settings."""
    return str(run.tuned.get("name", "?")) if run.tuned else ""


def _row(
    model: str, mto: str, label: str, runs: Sequence[RunRecord], tasks: Sequence[str], regression: Sequence[str] = (),
    binary: Sequence[Metric] = BINARY_METRICS,
) -> ModelRow:
    return ModelRow(
        model=model,
        mto=mto,
        label=label,
        seeds=tuple(run.seed for run in runs),
        cells={(task, metric.key): Cell(_values(runs, task, metric)) for task in tasks for metric in metrics_of(task, regression, binary)},
        samples_per_second=spread(run.train_samples_per_sec for run in runs),
        epoch_seconds=spread(epoch_seconds(run) for run in runs),
        epochs_run=spread(run.epochs_run for run in runs),
        best_epoch=spread(run.best_epoch for run in runs),
        parameters=runs[0].parameters,
        history=tuple(run.history for run in runs),
        study=study_of(runs[0]),
        tuned=runs[0].tuned,
    )


def _mark(rows: list[ModelRow], task: str, metric: Metric) -> list[ModelRow]:
    """The rows with this column's best and its ties marked (over every row, whatever its strategy)."""
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


def _oracle(runs: Sequence[RunRecord], tasks: Sequence[str], metrics: Sequence[Metric]) -> dict[str, Metrics] | None:
    """Mean oracle metrics (the same in every run of a dataset, since the data seed is fixed)."""
    oracles = [run.oracle for run in runs if run.oracle]
    if not oracles:
        return None

    def mean(task: str, metric: Metric) -> float | None:
        values = spread(metric.of(o[task]) if task in o else None for o in oracles)
        return values.mean if values.n or metric is not GAUC else None

    return {task: Metrics(**{metric.key: mean(task, metric) for metric in metrics}) for task in tasks}


def _by_seed(run: RunRecord) -> tuple[bool, int]:
    return run.seed is None, run.seed or 0


def build_tables(runs: Sequence[RunRecord]) -> list[DatasetTable]:
    """One table per dataset (alphabetical), a row per (model, strategy): models in registry order,
    each model's strategies together in registry order, a strategy's tuned rows after its own."""
    with_strategy = shows_strategy(runs)
    tables = []
    for dataset in sorted({run.dataset for run in runs}):
        of_dataset = [run for run in runs if run.dataset == dataset]
        tasks = tuple(dict.fromkeys(task for run in of_dataset for task in run.tasks))
        binary = shown_metrics(of_dataset)
        regression = tuple(task for task in tasks if any(run.tasks[task].regression for run in of_dataset if task in run.tasks))
        rows = []
        for model in model_order({run.model for run in of_dataset}):
            of_model = [run for run in of_dataset if run.model == model]
            for mto in strategy_order({run.mto for run in of_model}):
                of_strategy = [run for run in of_model if run.mto == mto]
                studies = sorted({study_of(run) for run in of_strategy} - {""})
                for study in [""] + studies:
                    cell_runs = sorted((run for run in of_strategy if study_of(run) == study), key=_by_seed)
                    if not cell_runs:
                        continue
                    shown = study if len(studies) > 1 else ""
                    label = run_label(model, mto, with_strategy=with_strategy, tuned=bool(study), study=shown)
                    rows.append(_row(model, mto, label, cell_runs, tasks, regression, binary))
        for task in tasks:
            for metric in metrics_of(task, regression, binary):
                rows = _mark(rows, task, metric)
        tables.append(DatasetTable(dataset, tasks, tuple(rows), _oracle(of_dataset, tasks, binary), binary, regression))
    return tables


# What a benchmark varies on purpose: never a difference between runs.
VARIED = ("model", "data.dataset", "train.seed", "train.mto")


def _scope(key: str, run: RunRecord) -> str | None:
    """Which runs a setting is compared between: a model's own settings between runs of that
    model (MMoE's expert_num means nothing to Shared-Bottom), a strategy's between runs of that
    strategy, a setting a study searched between the runs of its best settings, any other
    between all runs."""
    if run.tuned and key.rsplit(".", 1)[-1] in run.tuned.get("best_params", {}):
        return f"{run.model}@{study_of(run)}"
    if key.startswith("model_config."):
        return run.model
    if key.startswith("mto_config."):
        return run.mto
    return None


def shared_settings(runs: Sequence[RunRecord]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The settings every run that has them shares, and those that differ between runs that
    should share them (with their values, as ``repr``s).

    A model's or strategy's setting whose value differs only from one model or strategy to
    another (their defaults differ) is in neither.
    """
    flats = [(run, comparable(run.config, TABLE)) for run in runs]
    keys = sorted({key for _, flat in flats for key in flat} - set(VARIED))
    shared, differing = {}, {}
    for key in keys:
        by_scope: dict[str | None, dict[str, Any]] = {}
        for run, flat in flats:
            scope = _scope(key, run)
            if scope is not None and key not in flat:
                continue
            by_scope.setdefault(scope, {})[repr(flat.get(key))] = flat.get(key)
        values = {text: value for scoped in by_scope.values() for text, value in scoped.items()}
        if any(len(scoped) > 1 for scoped in by_scope.values()):
            differing[key] = sorted(values)
        elif len(values) == 1:
            shared[key] = next(iter(values.values()))
    return shared, differing


def machines(runs: Sequence[RunRecord]) -> list[str]:
    """Each distinct machine and device the runs ran on, in words."""
    seen = {}
    for run in runs:
        device = run.device or "?"
        info = run.machine  # machine.machine_info(): free-form, so read key by key
        if info:
            where = info.get("gpu") if device.startswith("cuda") else info.get("cpu")
            words = (f"{device} ({where}, {info.get('cpu_count')} cores, {info.get('torch_threads')} PyTorch threads, "
                     f"torch {info.get('torch')})")
        else:
            words = device
        seen[words] = None
    return list(seen)
