"""``mtrec benchmark``: train every model (with every strategy) on every dataset with several seeds, one JSON per run."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtreclib.commands.options import add_run_flags, file_and_flags
from mtreclib.comparison.runner import BenchmarkConfig, BenchmarkSummary, run_benchmark
from mtreclib.comparison.tuned import load_studies, write_snapshots
from mtreclib.config.flags import add_settings
from mtreclib.config.resolve import normalise, resolve
from mtreclib.core.atomic import check_writable
from mtreclib.core.errors import UserError
from mtreclib.core.settings import ConfigError, Settings, setting
from mtreclib.data.datasets import builtin_datasets
from mtreclib.models import list_models, model_class
from mtreclib.mto import list_strategies, strategy_class

NAME = "benchmark"
HELP = "train every model on every dataset with several seeds (and strategies), resuming where a previous call stopped"


@dataclass(frozen=True)
class BenchmarkGrid(Settings):
    """The grid of ``mtrec benchmark``: flags, and keys of its ``--config`` file."""

    models: tuple[str, ...] = setting(("all",), f"model names, or all ({', '.join(list_models())})", nonempty=True)
    datasets: tuple[str, ...] = setting(
        ("synthetic",),
        f"dataset names: built-in ({', '.join(builtin_datasets())}), folders under --data-dir, or dataset specs",
        nonempty=True,
    )
    seeds: int = setting(5, "runs per model and dataset: seeds SEED .. SEED+SEEDS-1", minimum=1)
    mtos: tuple[str, ...] = setting(
        ("ew",),
        f"multi-task optimisation strategies (mtrec strategies lists them), or all ({', '.join(list_strategies())}); "
        "each model is trained with each",
        nonempty=True,
    )
    out: str = setting(
        "runs", "run files go to OUT/DATASET/MODEL/seedK.json, OUT/DATASET/MODEL+STRATEGY/seedK.json for a strategy other than ew"
    )
    tuned: tuple[str, ...] = setting(
        (),
        "instead of --models/--datasets/--mtos: each study's model at the study's best settings (to OUT/DATASET/MODEL@STUDY/) "
        "and at its fixed settings alone, beside it; every study mtrec tune made in a database (sqlite:///runs/tune.db, "
        "postgresql://..., or an SQLite file), or a study by name in sqlite:///runs/tune.db",
        flag="--tuned",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, BenchmarkGrid, "the grid (also keys of --config)")
    add_run_flags(parser, model=False, skip=("dataset", "mto", "save_dir", "save", "results", "tensorboard", "resume"))


def names(items: tuple[str, ...]) -> tuple[str, ...]:
    """``("a", " b", "a")`` -> ``("a", "b")``: order kept, duplicates and blanks dropped."""
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def benchmark_config(args: argparse.Namespace) -> tuple[BenchmarkConfig, list[dict[str, Any]]]:
    """The ``BenchmarkConfig`` that ``--config`` and the flags describe, and the snapshots of its
    studies (``--tuned``); bad names are refused here.

    A model setting applies to the models of the grid that take it (``--expert-num`` to the
    models with experts); a key that no model, strategy or concern knows is an error.
    """
    values, sources = file_and_flags(args)
    keys = BenchmarkGrid.keys()
    given = {key for key in keys if key in values}
    try:
        grid = BenchmarkGrid.build({key: values.pop(key) for key in keys if key in values})
    except ConfigError as error:
        where = next((sources[key] for key in keys if key in sources and str(error).startswith(f"{key} (")), None)
        raise ConfigError(f"{where}: {error}" if where else str(error)) from None
    studies, snapshots = {}, []
    if grid.tuned:
        clash = [key for key in ("models", "datasets", "mtos") if key in given]
        if clash:
            raise UserError(f"--tuned takes the models, datasets and strategies from its studies; leave out --{clash[0]}")
        found = load_studies(names(grid.tuned))
        studies = {summary.name: summary for summary, _ in found}
        snapshots = [data for _, data in found]
        grid = dataclasses.replace(
            grid,
            models=tuple(dict.fromkeys(s.model for s in studies.values())),
            datasets=tuple(dict.fromkeys(s.data for s in studies.values())),
            mtos=tuple(dict.fromkeys(s.mto for s in studies.values())),
        )
    models = tuple(list_models()) if names(grid.models) == ("all",) else names(grid.models)
    mtos = tuple(list_strategies()) if names(grid.mtos) == ("all",) else names(grid.mtos)
    for model in models:
        model_class(model)  # an unknown name lists the known ones
    for mto in mtos:
        strategy_class(mto)
    settings = {normalise(key): value for key, value in values.items()}
    base = resolve(settings, sources=sources, strict=False)
    config = BenchmarkConfig(
        base=base,
        models=models,
        datasets=names(grid.datasets),
        seeds=tuple(range(base.train.seed, base.train.seed + grid.seeds)),
        out=Path(grid.out),
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
    check_writable(config.out, "--out", folder=True)
    # The report draws each study's plots from its snapshot, without the database.
    write_snapshots(config.out, snapshots)
    summary = run_benchmark(config)
    print(format_summary(summary, config.out))
    if summary.interrupted:
        return 130  # as a shell reports a process stopped by Ctrl-C
    return 1 if summary.failed else 0
