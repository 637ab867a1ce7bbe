"""``mtrec predict``: per-task probabilities of new rows from a saved model, file to file, in bounded memory."""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = "score new rows (Parquet or CSV, no labels needed) with a saved model: one probability column per task"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (SAVE_DIR/DATASET_MODEL/run-N) or its best.pt")
    parser.add_argument("--input", required=True, metavar="FILE", help="the rows: .parquet, .csv, .csv.gz (the format from the suffix)")
    parser.add_argument("--output", required=True, metavar="FILE", help="the scores: .parquet, .csv or .csv.gz, written whole or not at all")
    parser.add_argument(
        "--id-column", action="append", default=[], metavar="COLUMN", dest="id_columns",
        help="copy this input column to the output, before the scores (repeatable)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, metavar="N", help="rows per forward pass (default: the training batch size)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    parser.add_argument("--delimiter", metavar="CHAR", help="CSV input: the separator (default: the dataset spec's; tab for .tsv)")
    parser.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="CSV input: whether the first line names the columns (default: the dataset spec's)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress while scoring")


def run(args: argparse.Namespace) -> int:
    from mtreclib.core.progress import note
    from mtreclib.serving.inference import load_checkpoint
    from mtreclib.serving.streaming import predict_file

    inference = load_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size)
    summary = predict_file(
        inference, args.input, args.output, id_columns=args.id_columns, delimiter=args.delimiter, header=args.header,
        progress=not args.no_progress,
    )  # fmt: skip
    note(
        f"mtrec: {summary.rows:,} rows scored by {inference.model_name} (tasks {', '.join(inference.tasks)}) in "
        f"{summary.seconds:,.1f} s, {summary.rows_per_second:,.0f} rows/s -> {summary.output}"
    )
    return 0
