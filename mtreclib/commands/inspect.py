"""``mtrec inspect``: rows per split, label rates, vocabularies, out-of-vocabulary shares, missing values."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mtreclib.config.experiment import DataConfig, RunConfig
from mtreclib.config.flags import add_settings, same, settings_from
from mtreclib.core.atomic import check_writable, write_json
from mtreclib.core.settings import Settings, setting
from mtreclib.data.datasets import load_dataset
from mtreclib.data.inspect import format_inspection, inspect

NAME = "inspect"
HELP = "what a dataset holds: rows per split, label rates per task, per field the vocabulary, test OOV share, missing values"


@dataclass(frozen=True)
class InspectOptions(Settings):
    """What ``mtrec inspect`` takes."""

    dataset: str = setting(None, "a built-in dataset, a folder under --data-dir, or a dataset spec (.yaml)", flag="DATASET")
    data_dir: str = same(DataConfig, "data_dir")
    cache_dir: str | None = same(DataConfig, "cache_dir")
    json: str | None = setting(None, "also write the figures as JSON to this file")
    progress: bool = same(RunConfig, "progress")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, InspectOptions)


def run(args: argparse.Namespace) -> int:
    options = settings_from(InspectOptions, args)
    if options.json:
        check_writable(options.json, "--json")
    report = inspect(load_dataset(options.dataset, options.data_dir, progress=options.progress, cache_dir=options.cache_dir))
    if options.json:  # before printing: a reader that stops early (| head -1) must not cost the file
        write_json(options.json, report)
    print(format_inspection(report))
    return 0
