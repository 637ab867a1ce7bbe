"""``mtrec benchmark``: train every model on every dataset with several seeds, one JSON per run."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtreclib.commands.train import add_training_arguments, experiment_config
from mtreclib.data.datasets import builtin_datasets
from mtreclib.errors import UserError
from mtreclib.models import list_models, model_class
from mtreclib.results.runner import BenchmarkConfig, BenchmarkSummary, run_benchmark

NAME = "benchmark"
HELP = "train every model on every dataset with several seeds, resuming where a previous call stopped"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="all",
        help=f"comma-separated model names, or all ({', '.join(list_models())}) (default: %(default)s)",
    )
    parser.add_argument(
        "--datasets",
        default="synthetic",
        help=f"comma-separated dataset names: built-in ({', '.join(builtin_datasets())}) or folders under "
        "--data-dir in the processed layout (default: %(default)s)",
    )
    parser.add_argument("--data-dir", default="data", help="where processed datasets live (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="runs per model and dataset (default: %(default)s)")
    parser.add_argument("--out", default="runs", help="run files go to OUT/DATASET/MODEL/seedK.json (default: %(default)s)")
    add_training_arguments(parser, seed_help="the first seed; the runs use SEED, SEED+1, ..., SEED+SEEDS-1")


def names(text: str, what: str) -> tuple[str, ...]:
    """``"a, b,a"`` -> ``("a", "b")``: order kept, duplicates and blanks dropped."""
    items = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise UserError(f"--{what} names nothing; give a comma-separated list")
    return items


def benchmark_config(args: argparse.Namespace) -> BenchmarkConfig:
    """The ``BenchmarkConfig`` that the flags describe; unknown model names are refused here."""
    models = tuple(list_models()) if args.models.strip() == "all" else names(args.models, "models")
    for model in models:
        model_class(model)  # an unknown name lists the known ones
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    return BenchmarkConfig(
        base=experiment_config(args),
        models=models,
        datasets=names(args.datasets, "datasets"),
        seeds=tuple(range(args.seed, args.seed + args.seeds)),
        out=Path(args.out),
        progress=not args.no_progress,
    )


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
    config = benchmark_config(args)
    summary = run_benchmark(config)
    print(format_summary(summary, config.out))
    if summary.interrupted:
        return 130  # as a shell reports a process stopped by Ctrl-C
    return 1 if summary.failed else 0
