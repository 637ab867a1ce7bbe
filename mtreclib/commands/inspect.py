"""``mtrec inspect``: rows per split, label rates, vocabularies, out-of-vocabulary shares, missing values."""

from __future__ import annotations

import argparse

from mtreclib.core.atomic import write_json

NAME = "inspect"
HELP = "what a dataset holds: rows per split, label rates per task, per field the vocabulary, test OOV share, missing values"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a built-in dataset, a folder under --data-dir, or a dataset spec (.yaml)")
    parser.add_argument("--data-dir", default="data", help="where dataset folders live (default: %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress while the cache is built")


def run(args: argparse.Namespace) -> int:
    from mtreclib.data.datasets import load_dataset
    from mtreclib.data.inspect import format_inspection, inspect

    report = inspect(load_dataset(args.dataset, args.data_dir, progress=not args.no_progress))
    print(format_inspection(report))
    if args.json:
        write_json(args.json, report)
    return 0
