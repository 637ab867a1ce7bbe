"""PNG plots of the tuning studies behind a tuned benchmark, from their snapshots: Optuna's own
matplotlib plots of the optimisation history, the parameter importances (Optuna's default
evaluator, PED-ANOVA) and each trial's validation score per epoch (where pruning stopped trials).

Optuna draws through ``pyplot`` and sets its own style; each figure is drawn inside
``matplotlib.rc_context`` (the style does not leak into the report's other plots), saved, and
closed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

from mtreclib.comparison.files import atomic_output, file_stem
from mtreclib.tuning.available import require_optuna
from mtreclib.tuning.summary import restore

# What a study maximises (``mtreclib.training.trainer.validation_score``).
TARGET = "validation score (mean AUC)"


def _save(draw: Callable[[], Any], path: Path) -> bool:
    """Draw with ``draw`` (an Optuna plot returning its Axes) and save it; False when there is nothing to draw."""
    with matplotlib.rc_context(), warnings.catch_warnings():
        # With few trials the importances are rough, and Optuna says so each time: the plot shows it.
        warnings.simplefilter("ignore", UserWarning)
        try:
            axes = draw()
        except (ValueError, RuntimeError):  # too few trials, or no parameter that varies: no plot
            plt.close("all")
            return False
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(7.5, 4.8)
        try:
            with atomic_output(path) as temporary:
                figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
        finally:
            plt.close(figure)
    return True


def draw_study_plots(snapshots: Sequence[dict[str, Any]], out: Path) -> dict[str, list[tuple[str, str]]]:
    """Write each study's plots to ``out``; returns per study its (caption, file name)s."""
    if not snapshots:
        return {}
    optuna = require_optuna()
    from optuna.visualization import matplotlib as plots

    written: dict[str, list[tuple[str, str]]] = {}
    for data in snapshots:
        study = restore(optuna, data)
        name = data["summary"]["name"]
        stem = file_stem(name)
        wanted = [
            (f"Optimisation history of study {name}", f"study_{stem}_history.png", lambda: plots.plot_optimization_history(study, target_name=TARGET)),
            (f"Parameter importances in study {name}", f"study_{stem}_importances.png", lambda: plots.plot_param_importances(study, target_name=TARGET)),
            (f"Validation score per epoch of every trial of study {name}", f"study_{stem}_epochs.png",
             lambda: plots.plot_intermediate_values(study)),
        ]
        written[name] = [(caption, file) for caption, file, draw in wanted if _save(draw, out / file)]
    return written
