"""``mtrec report``: the results table (Markdown, CSV) and plots (PNG) of a benchmark's runs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mtreclib.config.flags import add_settings, settings_from
from mtreclib.core.atomic import check_writable
from mtreclib.core.errors import UserError
from mtreclib.core.progress import note
from mtreclib.core.settings import Settings, setting

NAME = "report"
HELP = "tables (Markdown, CSV) and plots (PNG) of the runs that mtrec benchmark wrote"


@dataclass(frozen=True)
class ReportOptions(Settings):
    """What ``mtrec report`` takes."""

    runs: str = setting("runs", "the benchmark's --out folder", flag="RUNS")
    out: str | None = setting(None, "where results.md, results.csv and the PNGs go; none: RUNS/report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, ReportOptions)


def run(args: argparse.Namespace) -> int:
    # matplotlib and scipy add about a second to start-up: only this command pays for them.
    from mtreclib.comparison.files import write_text
    from mtreclib.comparison.plots import draw_plots
    from mtreclib.comparison.runs import load_runs
    from mtreclib.comparison.study_plots import draw_study_plots
    from mtreclib.comparison.summary import build_tables, machines, shared_settings
    from mtreclib.comparison.table import csv_text, markdown
    from mtreclib.comparison.tuned import read_snapshots

    options = settings_from(ReportOptions, args)
    out = Path(options.out) if options.out else Path(options.runs) / "report"
    check_writable(out, "--out", folder=True)
    runs, failures = load_runs(options.runs)
    tables = build_tables(runs)
    settings, differing = shared_settings(runs)
    plots = draw_plots(tables, out)
    try:
        study_plots = draw_study_plots(read_snapshots(Path(args.runs)), out)
    except UserError as error:  # Optuna is not installed: the tables still come
        note(f"mtrec report: no plots of the tuning studies: {error}")
        study_plots = {}
    text = markdown(
        tables, runs=len(runs), settings=settings, differing=differing, machines=machines(runs), failures=failures, plots=plots,
        study_plots=study_plots,
    )
    write_text(out / "results.md", text)
    write_text(out / "results.csv", csv_text(tables))
    print(text)
    written = ["results.md", "results.csv"] + [name for pairs in [*plots.values(), *study_plots.values()] for _, name in pairs]
    print(f"wrote {', '.join(str(out / name) for name in written)}")
    return 0
