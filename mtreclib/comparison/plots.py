"""PNG plots of a benchmark: test AUC per model with error bars, and validation AUC per epoch.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), not
through ``pyplot``: no global backend is switched, no window opens, and nothing stays in
memory after a figure is saved.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtreclib.models import list_models
from mtreclib.comparison.files import atomic_output
from mtreclib.comparison.summary import DatasetTable, ModelRow

PALETTE = "tab10"


def file_stem(name: str) -> str:
    """A dataset name made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def model_colours(models: Sequence[str]) -> dict[str, tuple]:
    """One colour per model, the same in every plot: by registry position, then by name."""
    ordered = list_models() + sorted(set(models) - set(list_models()))
    palette = colormaps[PALETTE]
    return {model: palette(ordered.index(model) % palette.N) for model in models}


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")


def auc_figure(table: DatasetTable) -> Figure:
    """Per task, each model's test AUC: mean ± std over seeds, and each seed as a dot."""
    models = [row.model for row in table.rows]
    colours = model_colours(models)
    figure = Figure(figsize=(max(5.0, 0.75 * len(models) + 1.5) * len(table.tasks), 4.2))
    axes = figure.subplots(1, len(table.tasks), squeeze=False)[0]
    positions = np.arange(len(models))
    for ax, task in zip(axes, table.tasks):
        for x, row in zip(positions, table.rows):
            values = row.cells[(task, "auc")].spread
            colour = colours[row.model]
            ax.scatter(np.full(values.n, x + 0.18), values.values, s=12, color=colour, alpha=0.5, linewidths=0)
            ax.errorbar(x, values.mean, yerr=values.std if values.n >= 2 else None, fmt="o", color=colour, capsize=5, markersize=7)
        # The legend explains the marks once, in grey, rather than in the first model's colour.
        ax.errorbar([], [], yerr=[], fmt="o", color="0.4", capsize=5, markersize=7, label="mean ± std over seeds")
        ax.scatter([], [], s=12, color="0.4", alpha=0.5, linewidths=0, label="one seed")
        title = task
        if table.oracle:
            oracle = table.oracle[task]["auc"]
            title += f" (oracle AUC {oracle:.4f})"
            if _near(oracle, ax):
                ax.axhline(oracle, color="0.3", linestyle="--", linewidth=1, label="oracle")
        ax.set_xticks(positions, models, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylabel("test AUC")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    figure.suptitle(f"Test AUC per model on {table.dataset}")
    return figure


def _near(value: float, ax) -> bool:
    """Whether ``value`` fits on ``ax`` without squeezing the models' differences flat.

    An oracle far above every model would stretch the axis until the error bars, the point of
    the plot, are dots; then it is named in the title instead of drawn.
    """
    low, high = ax.get_ylim()
    return value <= high + (high - low)


def _curve(histories: Sequence[list[dict]], task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std of validation AUC over the seeds that reached each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for record in history:
            if "valid" in record and task in record["valid"]:
                by_epoch.setdefault(int(record["epoch"]), []).append(float(record["valid"][task]["auc"]))
    epochs = np.array(sorted(by_epoch))
    means = np.array([np.mean(by_epoch[e]) for e in epochs])
    stds = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return epochs, means, stds


def curves_figure(table: DatasetTable) -> Figure:
    """Per task, each model's validation AUC after every epoch: mean over seeds, ± std shaded."""
    colours = model_colours([row.model for row in table.rows])
    figure = Figure(figsize=(5.5 * len(table.tasks) + 1.8, 4.2), layout="constrained")
    axes = figure.subplots(1, len(table.tasks), squeeze=False)[0]
    for ax, task in zip(axes, table.tasks):
        for row in table.rows:
            _plot_curve(ax, row, task, colours[row.model])
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation AUC")
        ax.set_title(task)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", title="model")
    figure.suptitle(f"Validation AUC per epoch on {table.dataset} (mean over seeds, ± std shaded)")
    return figure


def _plot_curve(ax, row: ModelRow, task: str, colour: tuple) -> None:
    epochs, means, stds = _curve(row.history, task)
    if len(epochs) == 0:
        return
    ax.plot(epochs, means, marker="o", markersize=4, color=colour, label=row.model)
    ax.fill_between(epochs, means - stds, means + stds, color=colour, alpha=0.15, linewidth=0)


def draw_plots(tables: Sequence[DatasetTable], out: Path) -> dict[str, list[tuple[str, str]]]:
    """Write both plots of every dataset to ``out``; returns per dataset its (caption, file name)s."""
    written: dict[str, list[tuple[str, str]]] = {}
    for table in tables:
        stem = file_stem(table.dataset)
        plots = [
            (f"Test AUC per model on {table.dataset}", f"auc_{stem}.png", auc_figure(table)),
            (f"Validation AUC per epoch on {table.dataset}", f"curves_{stem}.png", curves_figure(table)),
        ]
        for caption, name, figure in plots:
            _save(figure, out / name)
        written[table.dataset] = [(caption, name) for caption, name, _ in plots]
    return written
