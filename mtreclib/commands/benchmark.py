"""``mtrec benchmark``: train every model (with every strategy) on every dataset with several seeds, one JSON per run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mtreclib.commands.options import add_run_flags, file_and_flags
from mtreclib.comparison.runner import BenchmarkConfig, BenchmarkSummary, run_benchmark
from mtreclib.comparison.tuned import load_studies, write_snapshots
from mtreclib.config.resolve import normalise, resolve
from mtreclib.data.datasets import builtin_datasets
from mtreclib.errors import UserError
from mtreclib.models import list_models, model_class
from mtreclib.mto import list_strategies, strategy_class

NAME = "benchmark"
HELP = "train every model on every dataset with several seeds (and strategies), resuming where a previous call stopped"
GRID = ("models", "datasets", "seeds", "mtos", "out", "tuned")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_argument_group("the grid (also keys of --config)")
    grid.add_argument(
        "--models",
        default=argparse.SUPPRESS,
        help=f"comma-separated model names, or all ({', '.join(list_models())}) (default: all)",
    )
    grid.add_argument(
        "--datasets",
        default=argparse.SUPPRESS,
        help=f"comma-separated dataset names: built-in ({', '.join(builtin_datasets())}), folders under --data-dir, "
        "or dataset specs (default: synthetic)",
    )
    grid.add_argument("--seeds", default=argparse.SUPPRESS, help="runs per model and dataset: seeds SEED .. SEED+SEEDS-1 (default: 5)")
    grid.add_argument(
        "--mtos",
        "--mto",
        dest="mtos",
        default=argparse.SUPPRESS,
        help=f"comma-separated multi-task optimisation strategies (mtrec strategies lists them), or all "
        f"({', '.join(list_strategies())}); each model is trained with each (default: ew)",
    )
    grid.add_argument(
        "--out",
        default=argparse.SUPPRESS,
        help="run files go to OUT/DATASET/MODEL/seedK.json, OUT/DATASET/MODEL+STRATEGY/seedK.json for a strategy other "
        "than ew (default: runs)",
    )
    grid.add_argument(
        "--tuned",
        default=argparse.SUPPRESS,
        metavar="STUDY|DB",
        help="instead of --models/--datasets/--mtos: each study's model at the study's best settings (to OUT/DATASET/"
        "MODEL@STUDY/) and at its fixed settings alone, beside it; every study mtrec tune made in a database "
        "(sqlite:///runs/tune.db, postgresql://..., or an SQLite file), or a study by name in sqlite:///runs/tune.db; "
        "comma-separated",
    )
    add_run_flags(parser, model=False, skip=("dataset", "mto", "save_dir", "save", "results", "tensorboard"))


def names(text: object, what: str) -> tuple[str, ...]:
    """``"a, b,a"`` or a YAML list -> ``("a", "b")``: order kept, duplicates and blanks dropped."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    found = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if not found:
        raise UserError(f"--{what} names nothing; give a comma-separated list")
    return found


def benchmark_config(args: argparse.Namespace) -> tuple[BenchmarkConfig, list[dict[str, Any]]]:
    """The ``BenchmarkConfig`` that ``--config`` and the flags describe, and the snapshots of its
    studies (``--tuned``); bad names are refused here.

    A model setting applies to the models of the grid that take it (``--expert-num`` to the
    models with experts); a key that no model, strategy or concern knows is an error.
    """
    values, sources = file_and_flags(args)
    grid = {key: values.pop(key) for key in GRID if key in values}
    studies, snapshots = {}, []
    if "tuned" in grid:
        given = [key for key in ("models", "datasets", "mtos") if key in grid]
        if given:
            raise UserError(f"--tuned takes the models, datasets and strategies from its studies; leave out --{given[0]}")
        found = load_studies(names(grid["tuned"], "tuned"))
        studies = {summary.name: summary for summary, _ in found}
        snapshots = [data for _, data in found]
        grid["models"] = names([s.model for s in studies.values()], "models")
        grid["datasets"] = names([s.data for s in studies.values()], "datasets")
        grid["mtos"] = names([s.mto for s in studies.values()], "mtos")
    models = tuple(list_models()) if str(grid.get("models", "all")).strip() == "all" else names(grid["models"], "models")
    mtos = tuple(list_strategies()) if str(grid.get("mtos", "ew")).strip() == "all" else names(grid.get("mtos", "ew"), "mtos")
    for model in models:
        model_class(model)  # an unknown name lists the known ones
    for mto in mtos:
        strategy_class(mto)
    try:
        seeds = int(grid.get("seeds", 5))
    except ValueError:
        raise UserError(f"--seeds must be an integer, got {grid['seeds']!r}") from None
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    settings = {normalise(key): value for key, value in values.items()}
    base = resolve(settings, sources=sources, strict=False)
    config = BenchmarkConfig(
        base=base,
        models=models,
        datasets=names(grid.get("datasets", "synthetic"), "datasets"),
        seeds=tuple(range(base.train.seed, base.train.seed + seeds)),
        out=Path(str(grid.get("out", "runs"))),
        progress=base.run.progress,
        mtos=mtos,
        settings=settings,
        studies=studies,
    )
    return config, snapshots


def format_summary(summary: BenchmarkSummary, out: Path) -> str:
    lines = ["benchmark interrupted; the same command resumes it (finished runs are kept)"] if summary.interrupted else []
    lines += [
        f"benchmark: {summary.planned} runs: {len(summary.skipped)} already done, {len(summary.ran)} ran now, "
        f"{len(summary.failed)} failed" + (f", {summary.not_run} not run yet" if summary.not_run else "")
    ]
    for spec, error in summary.failed:
        lines.append(f"  failed: {spec}: {error} (traceback in {spec.failure_path(out)})")
    if summary.failed and not summary.interrupted:
        lines.append("run the same command again to retry the failed runs; finished runs are kept")
    lines.append(f"tables and plots: mtrec report {out}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config, snapshots = benchmark_config(args)
    # The report draws each study's plots from its snapshot, without the database.
    write_snapshots(config.out, snapshots)
    summary = run_benchmark(config)
    print(format_summary(summary, config.out))
    if summary.interrupted:
        return 130  # as a shell reports a process stopped by Ctrl-C
    return 1 if summary.failed else 0
