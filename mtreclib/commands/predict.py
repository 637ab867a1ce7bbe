"""``mtrec predict``: per-task probabilities of new rows from a saved model, file to file, in bounded memory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mtreclib.commands.options import Shared, use_threads
from mtreclib.config.experiment import RunConfig, TrainConfig
from mtreclib.config.flags import add_settings, same, settings_from
from mtreclib.core.progress import note
from mtreclib.core.settings import Settings, setting
from mtreclib.serving.inference import load_checkpoint
from mtreclib.serving.streaming import predict_file

NAME = "predict"
HELP = "score new rows (Parquet or CSV, no labels needed) with a saved model: one probability column per task (a regression task: its prediction)"


@dataclass(frozen=True)
class PredictOptions(Settings):
    """What ``mtrec predict`` takes."""

    checkpoint: str = same(Shared, "checkpoint")
    input: str = setting(None, "the rows: .parquet, .csv, .csv.gz (the format from the suffix)")
    output: str = same(Shared, "output")
    id_columns: tuple[str, ...] = setting(
        (), "input columns copied to the output, before the scores (the flag may be repeated)", flag="--id-column"
    )
    batch_size: int | None = same(TrainConfig, "batch_size", run_default=True)
    delimiter: str | None = setting(None, "CSV input: the separator; none: the dataset spec's (tab for .tsv)")
    header: bool | None = setting(None, "CSV input: whether the first line names the columns; none: as the dataset spec says")
    device: str = same(RunConfig, "device")
    threads: int | None = same(TrainConfig, "threads")
    progress: bool = same(RunConfig, "progress")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, PredictOptions)


def run(args: argparse.Namespace) -> int:
    options = settings_from(PredictOptions, args)
    use_threads(options.threads)
    inference = load_checkpoint(options.checkpoint, device=options.device, batch_size=options.batch_size)
    summary = predict_file(
        inference, options.input, options.output, id_columns=options.id_columns, delimiter=options.delimiter,
        header=options.header, progress=options.progress,
    )  # fmt: skip
    note(
        f"mtrec: {summary.rows:,} rows scored by {inference.model_name} (tasks {', '.join(inference.tasks)}) in "
        f"{summary.seconds:,.1f} s, {summary.rows_per_second:,.0f} rows/s -> {summary.output}"
    )
    return 0
