"""``mtrec evaluate``: a saved model's per-task AUC, GAUC and log-loss on a split of a dataset, without training."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mtreclib.commands.options import Shared, use_threads
from mtreclib.config.experiment import DataConfig, RunConfig, TrainConfig
from mtreclib.config.flags import add_settings, same, settings_from
from mtreclib.core.atomic import check_writable
from mtreclib.core.settings import Settings, setting
from mtreclib.serving.evaluation import SPLITS, evaluate_checkpoint
from mtreclib.serving.inference import load_checkpoint
from mtreclib.training.experiment import format_results

NAME = "evaluate"
HELP = "per-task AUC, GAUC (where the data has groups) and log-loss of a saved model on a split of a dataset (default: the test split of the data it was trained on)"


@dataclass(frozen=True)
class EvaluateOptions(Settings):
    """What ``mtrec evaluate`` takes."""

    checkpoint: str = same(Shared, "checkpoint")
    dataset: str | None = same(DataConfig, "dataset", run_default=True)
    data_dir: str | None = same(DataConfig, "data_dir", run_default=True)
    cache_dir: str | None = same(DataConfig, "cache_dir")
    split: str = setting("test", "which split, cut as training cut it", choices=SPLITS)
    gauc_group: str | None = same(DataConfig, "gauc_group", run_default=True)
    results: str | None = same(RunConfig, "results")
    device: str = same(RunConfig, "device")
    threads: int | None = same(TrainConfig, "threads")
    progress: bool = same(RunConfig, "progress")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, EvaluateOptions)


def run(args: argparse.Namespace) -> int:
    options = settings_from(EvaluateOptions, args)
    if options.results:
        check_writable(options.results, "--results")
    use_threads(options.threads)
    inference = load_checkpoint(options.checkpoint, device=options.device)
    record = evaluate_checkpoint(
        inference, options.dataset, data_dir=options.data_dir, cache_dir=options.cache_dir, split=options.split, progress=options.progress,
        gauc_group=options.gauc_group
    )
    print(format_results(record))
    if options.results:
        record.write(options.results)
    return 0
