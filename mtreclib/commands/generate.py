"""``mtrec generate``: write a built-in synthetic dataset as processed-layout CSV files."""

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
from mtreclib.data.processed import write_processed_csv

NAME = "generate"
HELP = "write a synthetic dataset in the processed AliExpress layout (train.csv, test.csv)"


@dataclass(frozen=True)
class GenerateOptions(Settings):
    """What ``mtrec generate`` takes."""

    dataset: str = setting("synthetic", "the built-in dataset to write", choices=tuple(synthetic.PRESETS))
    data_dir: str = same(DataConfig, "data_dir")
    name: str | None = setting(None, "the folder's name under DATA_DIR; none: the dataset's name + _csv")
    train_rows: int | None = setting(None, "rows of train.csv; none: the dataset's", minimum=1)
    test_rows: int | None = setting(None, "rows of test.csv; none: the dataset's", minimum=1)
    data_seed: int = setting(0, "the data's seed", minimum=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, GenerateOptions)


def run(args: argparse.Namespace) -> int:
    options = settings_from(GenerateOptions, args)
    config = replace(synthetic.PRESETS[options.dataset], seed=options.data_seed)
    if options.train_rows is not None:
        config = replace(config, train_rows=options.train_rows)
    if options.test_rows is not None:
        config = replace(config, test_rows=options.test_rows)
    name = options.name or f"{options.dataset}_csv"
    if name in synthetic.PRESETS:
        # --dataset NAME means the built-in data, never a folder of that name: refuse to write one nobody would read.
        raise UserError(f"--name {name}: a built-in dataset's name; --dataset {name} would train on the built-in data, not these files")
    folder = Path(options.data_dir) / name
    check_writable(folder, "--data-dir", folder=True)
    data = synthetic.generate(config)
    write_processed_csv(folder / "train.csv", data.train, data.train_search_id)
    write_processed_csv(folder / "test.csv", data.test, data.test_search_id)
    print(f"wrote {folder}/train.csv ({config.train_rows:,} rows) and {folder}/test.csv ({config.test_rows:,} rows); "
          f"train on them with: mtrec train --dataset {name} --data-dir {options.data_dir}")
    return 0
