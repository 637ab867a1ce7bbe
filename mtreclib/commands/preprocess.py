"""``mtrec preprocess``: a public dataset's raw download, as its publisher serves it, to a dataset folder.

Every flag is generated from a settings class: this command's own (``PreprocessConfig``) and
each recipe's ``Config`` (a flag names the datasets that take it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mtreclib.config.experiment import DataConfig, RunConfig
from mtreclib.config.flags import add_component_settings, add_settings, given, same
from mtreclib.core.atomic import check_writable
from mtreclib.core.settings import Settings, setting
from mtreclib.recipes import find_recipe, recipe_classes, recipe_names, run_recipe

NAME = "preprocess"
HELP = (
    f"convert a public dataset's raw download ({', '.join(recipe.__name__ for recipe in recipe_classes())}), packed or unpacked "
    "in DATA_DIR or DATA_DIR/DATASET/, to the dataset folder DATA_DIR/DATASET/"
)


@dataclass(frozen=True)
class PreprocessConfig(Settings):
    """Which dataset to make, from where."""

    dataset: str = setting("AliExpress_NL", f"the dataset to make: {', '.join(recipe_names())}")
    data_dir: str = same(DataConfig, "data_dir")
    progress: bool = same(RunConfig, "progress")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, PreprocessConfig, "preprocess")
    recipes = {recipe.__name__: recipe for recipe in recipe_classes()}
    add_component_settings(parser, recipes, "recipe settings (the datasets that take each are in brackets)")


def run(args: argparse.Namespace) -> int:
    typed = given(args, exclude=("command",))
    config = PreprocessConfig.build({key: typed.pop(key) for key in PreprocessConfig.keys() if key in typed})
    check_writable(Path(config.data_dir) / config.dataset, "--data-dir", folder=True)
    # Only the recipe settings given: run_recipe refuses one the dataset's recipe does not take.
    report = run_recipe(config.dataset, config.data_dir, progress=config.progress, **typed)
    for line in report.lines():
        print(line)
    page = find_recipe(config.dataset).download_page(config.dataset)
    print(f"next: mtrec train --dataset {config.dataset} --data-dir {config.data_dir}   (downloaded from {page})")
    return 0
