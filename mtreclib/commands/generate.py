"""``mtrec generate``: write a built-in synthetic dataset as processed-layout CSV files, or the
README's running example ``myshop`` (a dataset spec over Parquet files, ``mtreclib.data.myshop``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from mtreclib.config.experiment import DataConfig
from mtreclib.config.flags import add_settings, same, settings_from
from mtreclib.core.atomic import check_writable
from mtreclib.core.errors import UserError
from mtreclib.core.settings import Settings, setting
from mtreclib.data import synthetic
from mtreclib.data.myshop import MyShopConfig, write_myshop
from mtreclib.data.processed import write_processed_csv

NAME = "generate"
HELP = "write a synthetic dataset in the processed AliExpress layout (train.csv, test.csv), or the README's myshop example"
MYSHOP = "myshop"


@dataclass(frozen=True)
class GenerateOptions(Settings):
    """What ``mtrec generate`` takes."""

    dataset: str = setting(
        "synthetic",
        "the built-in dataset to write, or myshop: the README's example (a spec, Parquet files, rows to score)",
        choices=(*synthetic.PRESETS, MYSHOP),
    )
    data_dir: str = same(DataConfig, "data_dir")
    name: str | None = setting(None, "the folder's name under DATA_DIR; none: the dataset's name + _csv (myshop: myshop)")
    train_rows: int | None = setting(None, "rows of the training split; none: the dataset's", minimum=1)
    test_rows: int | None = setting(None, "rows of the test split; none: the dataset's", minimum=1)
    data_seed: int = setting(0, "the data's seed", minimum=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, GenerateOptions)


def run(args: argparse.Namespace) -> int:
    options = settings_from(GenerateOptions, args)
    name = options.name or (MYSHOP if options.dataset == MYSHOP else f"{options.dataset}_csv")
    if name in synthetic.PRESETS:
        # --dataset NAME means the built-in data, never a folder of that name: refuse to write one nobody would read.
        raise UserError(f"--name {name}: a built-in dataset's name; --dataset {name} would train on the built-in data, not these files")
    folder = Path(options.data_dir) / name
    check_writable(folder, "--data-dir", folder=True)
    if options.dataset == MYSHOP:
        return _myshop(options, name, folder)
    config = replace(synthetic.PRESETS[options.dataset], seed=options.data_seed)
    if options.train_rows is not None:
        config = replace(config, train_rows=options.train_rows)
    if options.test_rows is not None:
        config = replace(config, test_rows=options.test_rows)
    data = synthetic.generate(config)
    write_processed_csv(folder / "train.csv", data.train, data.train_search_id)
    write_processed_csv(folder / "test.csv", data.test, data.test_search_id)
    print(f"wrote {folder}/train.csv ({config.train_rows:,} rows) and {folder}/test.csv ({config.test_rows:,} rows); "
          f"train on them with: mtrec train --dataset {name} --data-dir {options.data_dir}")
    return 0


def _myshop(options: GenerateOptions, name: str, folder: Path) -> int:
    config = MyShopConfig(seed=options.data_seed)
    if options.train_rows is not None:
        config = replace(config, train_rows=options.train_rows)
    if options.test_rows is not None:
        config = replace(config, test_rows=options.test_rows)
    folder = write_myshop(folder, config)
    print(f"wrote {folder}/dataset.yaml, train/day1.parquet and train/day2.parquet ({config.train_rows:,} rows), "
          f"test.parquet ({config.test_rows:,} rows) and new_rows.parquet ({config.new_rows:,} rows to score, no labels); "
          f"train on them with: mtrec train --dataset {name} --data-dir {options.data_dir}")
    return 0
