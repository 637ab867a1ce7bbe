"""Stumble 10 of issue 20: the report's plots read right. Checked on the figure objects (axis
limits, line colours, the chance line, the artists of a one-epoch curve), not on pixels."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgba
from test_report import fake_run

from mtreclib.comparison.plots import CHANCE, MIN_AUC_SPAN, PALETTE, auc_figure, auc_range, curves_figure, model_colours, row_styles
from mtreclib.comparison.summary import build_tables
from mtreclib.models import list_models
from mtreclib.runs.record import RunRecord

GREY = to_rgba("0.4")  # the legends' colour for the explanation of the marks


def chance_lines(ax) -> list:
    return [line for line in ax.get_lines() if list(line.get_ydata()) == [CHANCE, CHANCE]]


def table_of(runs: list[dict]):
    (table,) = build_tables([RunRecord.from_dict(run) for run in runs])
    return table


def near_chance() -> list[dict]:
    """Two models at chance on click (0.500 and 0.519) and clearly above it on conversion."""
    runs = []
    for model, click in (("good", 0.500), ("weak", 0.519)):
        for seed in range(2):
            run = fake_run(model, seed)
            run["tasks"]["click"]["auc"] = click + 0.001 * seed
            run["tasks"]["conversion"]["auc"] = 0.7 + 0.001 * seed
            for record in run["history"]:
                record["valid"]["click"]["auc"] = run["tasks"]["click"]["auc"]
            run.pop("oracle")
            runs.append(run)
    return runs


def test_the_auc_range_reaches_chance_near_it_and_is_never_a_few_thousandths_tall():
    bottom, top = auc_range(0.500, 0.519)  # both chance: 0.5 to 0.6, plus 5% room
    assert np.allclose((bottom, top), (0.5 - 0.005, 0.6 + 0.005))
    bottom, top = auc_range(0.80, 0.82)  # far from chance: 0.1 around the data, plus 5% room
    assert np.allclose((bottom, top), (0.76 - 0.005, 0.86 + 0.005))
    bottom, top = auc_range(0.55, 0.90)  # near chance and tall already: from 0.5
    assert np.allclose((bottom, top), (0.5 - 0.02, 0.9 + 0.02))


def test_auc_panels_share_one_range_with_the_chance_line():
    figure = auc_figure(table_of(near_chance()))
    click, conversion = figure.axes
    assert click.get_ylim() == conversion.get_ylim()
    bottom, top = click.get_ylim()
    assert bottom < CHANCE and top - bottom >= MIN_AUC_SPAN and top > 0.7  # 0.500 against 0.519 is a small step, 0.7 in view
    assert all(len(chance_lines(ax)) == 1 for ax in figure.axes)
    assert "chance (AUC 0.5)" in [text.get_text() for text in click.get_legend().get_texts()]


def test_validation_curves_share_one_range_with_the_chance_line():
    figure = curves_figure(table_of(near_chance()))
    axes = figure.axes
    assert len(axes) == 2 and axes[0].get_ylim() == axes[1].get_ylim()
    assert all(len(chance_lines(ax)) == 1 for ax in axes)


def test_no_model_is_drawn_in_the_legends_grey_and_every_model_has_its_own_colour():
    colours = model_colours(list_models())
    assert len(set(colours.values())) == len(list_models()) <= len(PALETTE)
    assert not any(r == g == b for r, g, b, _ in colours.values())  # no grey at all, the legends' included
    assert GREY not in colours.values() and colours["esmm"] != to_rgba("tab:gray")


def test_one_model_with_several_strategies_gets_a_colour_per_strategy():
    runs = []
    for mto in ("ew", "pcgrad", "uw"):
        run = fake_run("good", 0, mto=mto)
        run["config"]["train"]["mto"] = mto
        runs.append(run)
    table = table_of(runs)
    styles = row_styles(table.rows)
    assert len({style.colour for style in styles.values()}) == 3
    assert len({style.linestyle for style in styles.values()}) == 3
    lines = [line for line in curves_figure(table).axes[0].get_lines() if line.get_label() in {row.label for row in table.rows}]
    assert len(lines) == 3 and len({line.get_color() for line in lines}) == 3


def test_a_single_epoch_curve_is_a_large_labelled_marker():
    runs = []
    for model in ("good", "weak"):
        for seed in range(2):
            run = fake_run(model, seed)
            run["history"] = run["history"][:1]
            runs.append(run)
    figure = curves_figure(table_of(runs))
    ax = figure.axes[0]
    bars = [container for container in ax.containers if container.get_label() in ("good", "weak")]
    assert len(bars) == 2 and all(bar.lines[0].get_markersize() >= 8 and len(bar.lines[0].get_xdata()) == 1 for bar in bars)
    assert sorted(text.get_text() for text in ax.texts) == ["good", "weak"]  # each named beside its marker
