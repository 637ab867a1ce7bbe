"""``mtrec generate``: write a built-in synthetic dataset as processed-layout CSV files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from mtreclib.core.errors import UserError
from mtreclib.data import synthetic
from mtreclib.data.processed import write_processed_csv

NAME = "generate"
HELP = "write a synthetic dataset in the processed AliExpress layout (train.csv, test.csv)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", choices=list(synthetic.PRESETS), help="preset (default: %(default)s)")
    parser.add_argument("--data-dir", default="data", help="files go to DATA_DIR/NAME/ (default: %(default)s)")
    parser.add_argument("--name", help="folder name under DATA_DIR (default: the preset's name + _csv)")
    parser.add_argument("--train-rows", type=int, help="rows of train.csv (default: the preset's)")
    parser.add_argument("--test-rows", type=int, help="rows of test.csv (default: the preset's)")
    parser.add_argument("--data-seed", type=int, default=0, help="the data's seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    config = replace(synthetic.PRESETS[args.dataset], seed=args.data_seed)
    if args.train_rows is not None:
        config = replace(config, train_rows=args.train_rows)
    if args.test_rows is not None:
        config = replace(config, test_rows=args.test_rows)
    if config.train_rows < 1 or config.test_rows < 1:
        raise UserError("--train-rows and --test-rows must be at least 1")
    name = args.name or f"{args.dataset}_csv"
    if name in synthetic.PRESETS:
        # --dataset NAME means the built-in data, never a folder of that name: refuse to write one nobody would read.
        raise UserError(f"--name {name}: a built-in dataset's name; --dataset {name} would train on the built-in data, not these files")
    data = synthetic.generate(config)
    folder = Path(args.data_dir) / name
    write_processed_csv(folder / "train.csv", data.train, data.train_search_id)
    write_processed_csv(folder / "test.csv", data.test, data.test_search_id)
    print(f"wrote {folder}/train.csv ({config.train_rows:,} rows) and {folder}/test.csv ({config.test_rows:,} rows); "
          f"train on them with: mtrec train --dataset {name} --data-dir {args.data_dir}")
    return 0
