"""PNG plots of a benchmark: test AUC per row with error bars, validation AUC per epoch, and the
per-task weights per epoch of strategies that change them.

A row is a model trained with a strategy: its colour says the model (or, when a model is there
with several strategies, the model and strategy), its marker and line style the strategy, the
same in every plot; a row at a tuning study's best settings has hollow markers. No row is grey:
grey is the legends' explanation of the marks. Every AUC panel of a figure shares one y-range,
at least ``MIN_AUC_SPAN`` tall and reaching down to chance (0.5, drawn) when the data is near
it, so that 0.500 against 0.519 does not look decisive. A curve of one epoch is a labelled
marker, not a lone dot. Figures are drawn on matplotlib's Agg canvas directly
(``Figure`` + ``FigureCanvasAgg``), not through ``pyplot``: no global backend is switched, no
window opens, and nothing stays in memory after a figure is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mtreclib.comparison.files import atomic_output, file_stem
from mtreclib.comparison.summary import DatasetTable, ModelRow
from mtreclib.models import list_models
from mtreclib.mto import list_strategies
from mtreclib.runs.record import EpochRecord

# tab10 without its grey, then tab20's lighter shades of the same hues (its greys left out too):
# 18 colours, as many as the registry has models, none the legends' grey.
PALETTE = tuple(
    to_rgba(colour)
    for colour in (
        *(c for i, c in enumerate(colormaps["tab10"].colors) if i != 7),
        *(c for i, c in enumerate(colormaps["tab20"].colors) if i % 2 == 1 and i != 15),
    )
)
CHANCE = 0.5
# The least span of an AUC axis: differences of a few thousandths are not drawn as a full panel.
MIN_AUC_SPAN = 0.1
# Per strategy, by registry position (``ew`` first: plain dots and solid lines).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (8, 2)), (0, (1, 3)), (0, (3, 1, 1, 1)))
# A weight this close to 1 is equal weighting's (float32 rounding of (1/T) * T).
EQUAL_WEIGHT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Style:
    """How one row is drawn: colour from its model, marker and line style from its strategy; hollow
    markers (``face`` "none") for a tuned row."""

    colour: tuple
    marker: str
    linestyle: str | tuple
    face: tuple | str | None = None

    @property
    def marker_face(self) -> tuple | str:
        return self.colour if self.face is None else self.face


def _position(name: str, known: list[str], names: Sequence[str]) -> int:
    """``name``'s index in the registry order ``known``, then the other names alphabetically."""
    return (known + sorted(set(names) - set(known))).index(name)


def model_colours(models: Sequence[str]) -> dict[str, tuple]:
    """One colour per model, the same in every plot: by registry position, then by name."""
    return {model: PALETTE[_position(model, list_models(), models) % len(PALETTE)] for model in models}


def row_colours(rows: Sequence[ModelRow]) -> dict[tuple[str, str], tuple]:
    """Per (model, strategy), its colour: the model's, unless some model is there with several
    strategies; then each (model, strategy) a colour of its own, in registry order, since a marker
    and a dash alone do not tell five curves of one colour apart."""
    models, strategies = [row.model for row in rows], [row.mto for row in rows]
    pairs = sorted({(row.model, row.mto) for row in rows}, key=lambda p: (_position(p[0], list_models(), models), _position(p[1], list_strategies(), strategies)))
    if len({model for model, _ in pairs}) == len(pairs):
        colours = model_colours(models)
        return {(model, mto): colours[model] for model, mto in pairs}
    return {pair: PALETTE[i % len(PALETTE)] for i, pair in enumerate(pairs)}


def row_styles(rows: Sequence[ModelRow]) -> dict[tuple[str, ...], Style]:
    """Each row's style, keyed by ``ModelRow.key``."""
    colours = row_colours(rows)
    strategies = [row.mto for row in rows]
    styles = {}
    for row in rows:
        index = _position(row.mto, list_strategies(), strategies)
        face = "none" if row.study else None
        styles[row.key] = Style(colours[(row.model, row.mto)], MARKERS[index % len(MARKERS)], LINE_STYLES[index % len(LINE_STYLES)], face)
    return styles


def auc_range(low: float, high: float) -> tuple[float, float]:
    """The y-range of AUC panels whose data lies between ``low`` and ``high``.

    Chance (0.5) is in view when the data comes within ``MIN_AUC_SPAN`` of it, and the range is
    at least ``MIN_AUC_SPAN`` tall (upward from chance, else around the data), plus 5% room.
    """
    if low - CHANCE <= MIN_AUC_SPAN:
        low = min(low, CHANCE)
        high = max(high, low + MIN_AUC_SPAN)
    elif high - low < MIN_AUC_SPAN:
        middle = (low + high) / 2
        low, high = middle - MIN_AUC_SPAN / 2, middle + MIN_AUC_SPAN / 2
    room = 0.05 * (high - low)
    return low - room, high + room


def _data_range(axes: Sequence) -> tuple[float, float] | None:
    """The lowest and highest y of the data drawn on ``axes`` so far; None when nothing is."""
    boxes = [ax.dataLim for ax in axes if np.isfinite(ax.dataLim.y0) and np.isfinite(ax.dataLim.y1)]
    return (min(b.y0 for b in boxes), max(b.y1 for b in boxes)) if boxes else None


def _share_auc_range(axes: Sequence, low: float, high: float) -> None:
    """Every panel the same ``auc_range``, with the chance line where it is in view."""
    bottom, top = auc_range(low, high)
    for ax in axes:
        ax.set_ylim(bottom, top)
        if bottom <= CHANCE <= top:
            ax.axhline(CHANCE, color="0.5", linestyle=":", linewidth=1.2, zorder=0, label="chance (AUC 0.5)")


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")


def _positions(rows: Sequence[ModelRow]) -> np.ndarray:
    """x of each row: one apart, with a wider gap where the model changes (a model's strategies side by side)."""
    positions, x = [], 0.0
    for i, row in enumerate(rows):
        if i and row.model != rows[i - 1].model and row.label != row.model:
            x += 0.6
        positions.append(x)
        x += 1.0
    return np.array(positions)


def auc_figure(table: DatasetTable) -> Figure:
    """Per task, each row's test AUC (a regression task's RMSE): mean ± std over seeds, and each seed as a dot.

    With many rows the tasks are stacked rather than side by side, so that the figure stays
    readable at its saved size.
    """
    styles = row_styles(table.rows)
    positions = _positions(table.rows)
    width = max(5.0, 0.55 * (positions[-1] + 1) + 2.0)
    side_by_side = len(table.tasks) == 1 or width <= 8.0
    columns, lines = (len(table.tasks), 1) if side_by_side else (1, len(table.tasks))
    figure = Figure(figsize=(width * columns, 4.4 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for ax, task in zip(axes, table.tasks):
        metric = table.metrics(task)[0]
        for x, row in zip(positions, table.rows):
            values = row.cells[(task, metric.key)].spread
            style = styles[row.key]
            ax.scatter(np.full(values.n, x + 0.2), values.values, s=12, color=style.colour, alpha=0.5, linewidths=0, marker=style.marker)
            ax.errorbar(x, values.mean, yerr=values.std if values.n >= 2 else None, fmt=style.marker, color=style.colour,
                        markerfacecolor=style.marker_face, capsize=5, markersize=7)
    # The binary tasks' AUC panels share one range; a regression task's RMSE panel keeps its own.
    binary = [ax for ax, task in zip(axes, table.tasks) if task not in table.regression]
    low, high = _data_range(binary) or (CHANCE, CHANCE)
    oracles = {task: table.oracle[task].auc for task in table.tasks if task not in table.regression} if table.oracle else {}
    near = [oracle for oracle in oracles.values() if _near(oracle, low, high)]
    if binary:
        _share_auc_range(binary, low, max([high, *near]))
    for ax, task in zip(axes, table.tasks):
        metric = table.metrics(task)[0]
        # The legend explains the marks once, in grey, rather than in the first row's colour.
        ax.errorbar([], [], yerr=[], fmt="o", color="0.4", capsize=5, markersize=7, label="mean ± std over seeds")
        ax.scatter([], [], s=12, color="0.4", alpha=0.5, linewidths=0, label="one seed")
        title = task
        if task in oracles:
            title += f" (oracle AUC {oracles[task]:.4f})"
            if oracles[task] in near:
                ax.axhline(oracles[task], color="0.3", linestyle="--", linewidth=1, label="oracle")
        ax.set_xticks(positions, [row.label for row in table.rows], rotation=30, ha="right")
        ax.set_xlim(positions[0] - 0.6, positions[-1] + 0.6)
        ax.set_ylabel(f"test {metric.label}")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    figure.suptitle(f"Test AUC per model on {table.dataset}" + (" (RMSE for regression tasks, lower is better)" if table.regression else ""))
    return figure


def _near(value: float, low: float, high: float) -> bool:
    """Whether ``value`` fits beside data from ``low`` to ``high`` without squeezing the models' differences flat.

    An oracle far above every model would stretch the axis until the error bars, the point of
    the plot, are dots; then it is named in the title instead of drawn.
    """
    return value <= high + max(high - low, MIN_AUC_SPAN)


def per_epoch(
    histories: Sequence[Sequence[EpochRecord]], value: Callable[[EpochRecord], float | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std of ``value`` over the seeds that reached each epoch (and have a value there)."""
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for record in history:
            found = value(record)
            if found is not None:
                by_epoch.setdefault(record.epoch, []).append(float(found))
    epochs = np.array(sorted(by_epoch))
    means = np.array([np.mean(by_epoch[e]) for e in epochs])
    stds = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return epochs, means, stds


def valid_auc(task: str) -> Callable[[EpochRecord], float | None]:
    """An epoch's validation AUC of ``task`` (RMSE for a regression task); None without a validation split."""

    def value(record: EpochRecord) -> float | None:
        if not record.valid or task not in record.valid:
            return None
        metrics = record.valid[task]
        return metrics.rmse if metrics.regression else metrics.auc

    return value


def task_weight(task: str) -> Callable[[EpochRecord], float | None]:
    """The strategy's weight of ``task`` at an epoch's end; None in records that do not have it."""
    return lambda record: record.task_weights.get(task)


def changes_weights(row: ModelRow) -> bool:
    """Whether some epoch of the row has a task weight other than equal weighting's 1."""
    return any(
        abs(weight - 1.0) > EQUAL_WEIGHT_TOLERANCE for history in row.history for record in history for weight in record.task_weights.values()
    )


def _integer_epochs(ax, epochs: Sequence[int]) -> None:
    """Epoch ticks at whole epochs only, and at least half an epoch of room on either side."""
    # min_n_ticks=1: with the default 2, a one-epoch curve (one integer in view) gets 0.96, 0.98 ... ticks.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        low, high = ax.get_xlim()
        ax.set_xlim(min(low, min(epochs) - 0.5), max(high, max(epochs) + 0.5))


def _epoch_figure(
    table: DatasetTable,
    rows: Sequence[ModelRow],
    value: Callable[[str], Callable[[EpochRecord], float | None]],
    ylabel: str,
    dodge: float = 0.0,
    auc: bool = False,
) -> tuple[Figure, np.ndarray]:
    """Per task, each row's ``value(task)`` per epoch: mean over seeds, ± std shaded; the legend on the right.

    ``dodge``: the rows' curves are shifted this far apart along the epochs, so that identical
    ones (the same fixed weights under every model) stay visible side by side. ``auc``: the
    values are AUCs (one shared range, the chance line).
    """
    styles = row_styles(table.rows)
    figure = Figure(figsize=(5.5 * len(table.tasks) + 2.2, 4.2), layout="constrained")
    axes = figure.subplots(1, len(table.tasks), squeeze=False)[0]
    epochs = sorted({record.epoch for row in rows for history in row.history for record in history})
    for ax, task in zip(axes, table.tasks):
        for i, row in enumerate(rows):
            _plot_curve(ax, row, value(task), styles[row.key], offset=dodge * (i - (len(rows) - 1) / 2))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(task)
        _integer_epochs(ax, epochs)
        ax.grid(alpha=0.3)
    binary = [ax for ax, task in zip(axes, table.tasks) if task not in table.regression]  # a regression task's panel keeps its own range
    found = _data_range(binary) if auc else None
    if found is not None:
        _share_auc_range(binary, *found)
    handles, labels = axes[0].get_legend_handles_labels()
    with_strategy = any(row.label != row.model for row in rows)
    figure.legend(handles, labels, loc="outside right center", title="model + strategy" if with_strategy else "model")
    return figure, axes


def _plot_curve(ax, row: ModelRow, value: Callable[[EpochRecord], float | None], style: Style, offset: float = 0.0) -> None:
    epochs, means, stds = per_epoch(row.history, value)
    if len(epochs) == 0:
        return
    epochs = epochs + offset
    if len(epochs) == 1:
        # One epoch: no line to follow and no band to shade; a marker as large as the AUC plot's, its
        # spread as an error bar, and its name beside it.
        ax.errorbar(epochs, means, yerr=stds if stds[0] > 0 else None, fmt=style.marker, markersize=8, capsize=4, color=style.colour,
                    markerfacecolor=style.marker_face, label=row.label)  # fmt: skip
        ax.annotate(row.label, (epochs[0], means[0]), xytext=(8, 0), textcoords="offset points", va="center", fontsize="small", color=style.colour)
        return
    ax.plot(epochs, means, marker=style.marker, markersize=4, color=style.colour, markerfacecolor=style.marker_face,
            linestyle=style.linestyle, label=row.label)
    ax.fill_between(epochs, means - stds, means + stds, color=style.colour, alpha=0.15, linewidth=0)


def curves_figure(table: DatasetTable) -> Figure:
    """Per task, each row's validation AUC after every epoch: mean over seeds, ± std shaded."""
    figure, axes = _epoch_figure(table, table.rows, valid_auc, "validation AUC", auc=True)
    for ax, task in zip(axes, table.tasks):
        if task in table.regression:
            ax.set_ylabel("validation RMSE (lower is better)")
    figure.suptitle(f"Validation AUC per epoch on {table.dataset} (mean over seeds, ± std shaded)")
    return figure


def weights_figure(table: DatasetTable) -> Figure | None:
    """Per task, the weight each strategy that changes them gave it at the end of every epoch
    (mean over seeds, ± std shaded; 1 is equal weighting). None when no row changes them."""
    rows = [row for row in table.rows if changes_weights(row)]
    if not rows:
        return None
    # Strategies with weights set in advance give every model the same curve: dodged apart.
    dodge = min(0.06, 0.3 / len(rows))
    figure, axes = _epoch_figure(table, rows, task_weight, "task weight (1: equal weighting)", dodge=dodge)
    for ax in axes:
        ax.axhline(1.0, color="0.5", linestyle="--", linewidth=1, zorder=0)
    figure.suptitle(f"Task weights per epoch on {table.dataset} (at each epoch's end; mean over seeds, ± std shaded)")
    return figure


def draw_plots(tables: Sequence[DatasetTable], out: Path) -> dict[str, list[tuple[str, str]]]:
    """Write the plots of every dataset to ``out``; returns per dataset its (caption, file name)s."""
    written: dict[str, list[tuple[str, str]]] = {}
    for table in tables:
        stem = file_stem(table.dataset)
        plots = [
            (f"Test AUC per model on {table.dataset}", f"auc_{stem}.png", auc_figure(table)),
            (f"Validation AUC per epoch on {table.dataset}", f"curves_{stem}.png", curves_figure(table)),
        ]
        weights = weights_figure(table)
        if weights is not None:
            plots.append((f"Task weights per epoch on {table.dataset}", f"weights_{stem}.png", weights))
        for caption, name, figure in plots:
            _save(figure, out / name)
        written[table.dataset] = [(caption, name) for caption, name, _ in plots]
    return written
