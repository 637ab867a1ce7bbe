"""The results table as Markdown and CSV, in the original MTReclib's layout.

Per dataset, one row per model (per model and strategy when the runs used several multi-task
optimisation strategies) and, per task, test AUC, GAUC (where the data has groups) and log-loss: mean ± standard deviation over
seeds, the best in bold, and † on the rows the significance test cannot tell from the best. Then
the oracle row (built-in data) and a table of training speed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtreclib.comparison.runs import FailedRun, run_label
from mtreclib.comparison.stats import ALPHA, Spread
from mtreclib.comparison.summary import EQUAL_WEIGHTS, GAUC, Cell, DatasetTable, Metric
from mtreclib.tuning.summary import StudySummary, format_seconds
from mtreclib.tuning.trial import settings_text

TIE_MARK = "†"
# Seconds per epoch of a row none of whose epochs ran whole (--max-steps cut them all short).
NO_COMPLETE_EPOCH = "n/a"


def decimals(metric_key: str, value: float) -> int:
    """Digits after the point: 4 for AUC; for log-loss 4 significant digits (0.1085, 0.006090),
    as the original printed CTR and CTCVR log-losses of very different sizes."""
    if metric_key != "logloss" or not math.isfinite(value) or value <= 0:
        return 4
    return min(8, max(4, 3 - math.floor(math.log10(value))))


def format_spread(values: Spread, digits: int) -> str:
    """``mean ± std``, or the mean alone from one value."""
    if values.n == 0:
        return "–"
    if values.n < 2:
        return f"{values.mean:.{digits}f}"
    return f"{values.mean:.{digits}f} ± {values.std:.{digits}f}"


def format_cell(cell: Cell, metric: Metric) -> str:
    text = format_spread(cell.spread, decimals(metric.key, cell.spread.mean))
    if cell.best:
        return f"**{text}**"
    return f"{text} {TIE_MARK}" if cell.tie else text


def _markdown_rows(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _oracle_cell(value: float | None, metric: Metric) -> str:
    return "–" if value is None else f"*{value:.{decimals(metric.key, value)}f}*"


def metrics_table(table: DatasetTable) -> list[str]:
    """The per-task AUC (GAUC) and log-loss (a regression task: RMSE and MAE) table of one dataset, as Markdown lines."""
    header = ["model"] + [f"{task} {metric.label}" for task in table.tasks for metric in table.metrics(task)] + ["seeds"]
    rows = [
        [row.label]
        + [format_cell(row.cells[(task, metric.key)], metric) for task in table.tasks for metric in table.metrics(task)]
        + [str(len(row.seeds))]
        for row in table.rows
    ]
    if table.oracle:
        rows.append(
            ["*oracle*"]
            + [_oracle_cell(m.of(table.oracle[task]), m) for task in table.tasks for m in table.metrics(task)]
            + [""]
        )
    return _markdown_rows(header, rows, ["---"] + ["---:"] * (len(header) - 1))


def _oracle_cell(value: float | None, metric: Metric) -> str:
    return "" if value is None else f"*{value:.{decimals(metric.key, value)}f}*"


def speed_table(table: DatasetTable) -> list[str]:
    """Training speed and length per row, as Markdown lines; seconds per epoch count complete epochs only."""
    header = ["model", "training samples/s", "s per epoch", "epochs run", "best epoch", "parameters"]
    rows = [
        [
            row.label,
            format_spread(row.samples_per_second, 0),
            format_spread(row.epoch_seconds, 1) if row.epoch_seconds.n else NO_COMPLETE_EPOCH,
            format_spread(row.epochs_run, 1),
            format_spread(row.best_epoch, 1),
            f"{row.parameters:,}" if row.parameters is not None else "–",
        ]
        for row in table.rows
    ]
    lines = _markdown_rows(header, rows, ["---"] + ["---:"] * (len(header) - 1))
    if any(row.epoch_seconds.n == 0 for row in table.rows):
        lines += ["", f"s per epoch counts complete epochs only; {NO_COMPLETE_EPOCH}: --max-steps cut every epoch of those runs short."]
    return lines


def budget_table(table: DatasetTable) -> list[str]:
    """Per tuned row, the search its settings came from: trials, epochs and CPU time spent, and what it found."""
    header = ["model", "study", "trials (complete / pruned / failed)", "epochs trained", "CPU time", "best validation score",
              "best settings"]
    rows = []
    for row in table.rows:
        if row.tuned is None:
            continue
        study = StudySummary.from_dict(row.tuned)
        counts = f"{sum(study.trials.values())} ({study.trials.get('complete', 0)} / {study.trials.get('pruned', 0)} / {study.trials.get('fail', 0)})"
        rows.append([row.label, study.name, counts, str(study.epochs), format_seconds(study.cpu_seconds), f"{study.best_value:.4f}",
                     settings_text(study.best_params)])
    return _markdown_rows(header, rows, ["---", "---", "---:", "---:", "---:", "---:", "---"])


def legend(tables: Sequence[DatasetTable]) -> str:
    seeds = sorted({len(row.seeds) for table in tables for row in table.rows})
    text = (
        "Test metrics, mean ± sample standard deviation over seeds (a lone value: one seed). "
        "**Bold**: the best mean of the column (highest AUC, lowest log-loss). "
        f"{TIE_MARK}: not distinguishable from the best: a two-sided Welch t-test over seeds "
        f"gives p ≥ {ALPHA} (the seeds vary initialisation and shuffling; data and split are fixed). "
    )
    if min(seeds) < 2:
        text += "With one seed there is no spread and no test, so no mark. "
    elif min(seeds) < 5:
        text += f"With {min(seeds)} seeds the test has little power: {TIE_MARK} means 'not shown to differ', not 'equal'. "
    text += "No correction for comparing several models with the best. The oracle scores the data's true probabilities."
    if any(GAUC in table.binary_metrics for table in tables):
        text += (" GAUC: the AUC within each group of the data's group column (a user, a search page), averaged over the groups "
                 "weighted by their rows; groups with one class only are left out (highest is best).")
    if _shows_strategy(tables):
        text += (" A row per model and multi-task optimisation strategy (`model + strategy`; ew: equal weights), "
                 "marked over all rows of the dataset.")
    if _shows_tuned(tables):
        text += (" *(tuned)*: the best settings of a study (`mtrec tune`, chosen on the validation split), retrained "
                 "over the seeds and tested once; the row without it has the same fixed settings with the searched ones "
                 "at their defaults. The search each cost is under the table.")
    return text


def _shows_tuned(tables: Sequence[DatasetTable]) -> bool:
    return any(row.tuned is not None for table in tables for row in table.rows)


def _shows_strategy(tables: Sequence[DatasetTable]) -> bool:
    return any(row.label.startswith(f"{row.model} + ") for table in tables for row in table.rows)


def _failure_line(failure: FailedRun, with_strategy: bool) -> str:
    name = run_label(failure.model, failure.mto, with_strategy=with_strategy or failure.mto != EQUAL_WEIGHTS)
    return f"- {name} on {failure.dataset}, seed {failure.seed}: {failure.error}"


def _setting(value: Any) -> str:
    return "none" if value is None else str(value)


def markdown(
    tables: Sequence[DatasetTable],
    *,
    runs: int,
    settings: Mapping[str, Any],
    differing: Mapping[str, list[Any]],
    machines: Sequence[str],
    failures: Sequence[FailedRun],
    plots: Mapping[str, Sequence[tuple[str, str]]],
    study_plots: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> str:
    """The whole report as Markdown; ``plots`` maps a dataset to its (caption, file name) pairs,
    ``study_plots`` a tuning study to its."""
    shared = ", ".join(f"`{key}={_setting(value)}`" for key, value in settings.items())
    lines = [
        "# Benchmark results",
        "",
        f"{runs} runs." + (f" Settings shared by every run that has them: {shared}." if shared else ""),
        "",
        "Machine: " + "; ".join(machines) + ".",
        "",
    ]
    if differing:
        lines += [
            "**Warning: the runs were made with different settings**, so the table compares unlike runs: "
            + "; ".join(f"`{key}` is {', '.join(values)}" for key, values in differing.items())
            + ".",
            "",
        ]
    lines += [legend(tables), ""]
    for table in tables:
        lines += [f"## {table.dataset}", ""] + metrics_table(table) + [""]
        if any(row.tuned is not None for row in table.rows):
            lines += [f"The searches behind the tuned rows on {table.dataset}:", ""] + budget_table(table) + [""]
        lines += [f"![{caption}]({name})" for caption, name in plots.get(table.dataset, ())]
        lines += ["", f"Training speed on {table.dataset}:", ""] + speed_table(table) + [""]
    if study_plots:
        lines += ["## Tuning studies", ""]
        for study, pairs in study_plots.items():
            lines += [f"### {study}", ""] + [f"![{caption}]({name})" for caption, name in pairs] + [""]
    if failures:
        lines += ["## Failed runs (no result)", ""]
        lines += [_failure_line(failure, _shows_strategy(tables)) for failure in failures]
        lines.append("")
    return "\n".join(lines)


def csv_text(tables: Sequence[DatasetTable]) -> str:
    """One row per dataset, model and strategy (and oracle), per task and metric its mean, std and mark."""
    tasks = list(dict.fromkeys(task for table in tables for task in table.tasks))
    columns = ["dataset", "model", "mto", "study", "seeds"]
    for task in tasks:
        # A task's columns: every metric any dataset shows for it, in their order (GAUC only where some data has groups).
        shown = dict.fromkeys(metric for table in tables if task in table.tasks for metric in table.metrics(task))
        for metric in shown:
            columns += [f"{task}_{metric.key}_mean", f"{task}_{metric.key}_std", f"{task}_{metric.key}_mark"]
    columns += ["train_samples_per_sec_mean", "train_samples_per_sec_std", "epoch_seconds_mean", "epochs_run_mean",
                "best_epoch_mean", "parameters", "tuning_trials", "tuning_epochs", "tuning_cpu_seconds"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        for row in table.rows:
            record: dict[str, Any] = {"dataset": table.dataset, "model": row.model, "mto": row.mto, "study": row.study,
                                      "seeds": len(row.seeds)}
            for (task, key), cell in row.cells.items():
                record[f"{task}_{key}_mean"] = cell.spread.mean
                record[f"{task}_{key}_std"] = cell.spread.std if cell.spread.n >= 2 else ""
                record[f"{task}_{key}_mark"] = "best" if cell.best else "tie" if cell.tie else ""
            record.update(
                train_samples_per_sec_mean=row.samples_per_second.mean,
                train_samples_per_sec_std=row.samples_per_second.std if row.samples_per_second.n >= 2 else "",
                epoch_seconds_mean=row.epoch_seconds.mean if row.epoch_seconds.n else "",
                epochs_run_mean=row.epochs_run.mean,
                best_epoch_mean=row.best_epoch.mean,
                parameters=row.parameters if row.parameters is not None else "",
            )
            if row.tuned is not None:
                study = StudySummary.from_dict(row.tuned)
                record.update(tuning_trials=sum(study.trials.values()), tuning_epochs=study.epochs, tuning_cpu_seconds=study.cpu_seconds)
            writer.writerow(record)
        if table.oracle:
            record = {"dataset": table.dataset, "model": "oracle", "mto": "", "seeds": ""}
            for task, metrics in table.oracle.items():
                for metric in table.metrics(task):
                    value = metric.of(metrics)
                    record[f"{task}_{metric.key}_mean"] = "" if value is None else value
            writer.writerow(record)
    return out.getvalue()
