"""``mtrec preprocess``: a public dataset's raw download, as its publisher serves it, to a dataset folder."""

from __future__ import annotations

import argparse

from mtreclib.recipes import find_recipe, recipe_names, run_recipe

NAME = "preprocess"
HELP = "convert a public dataset's raw download (AliExpress, Census-Income, Ali-CCP, KuaiRand) to a dataset folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="AliExpress_NL", help=f"one of {', '.join(recipe_names())} (default: %(default)s)")
    parser.add_argument(
        "--data-dir",
        default="data",
        help="holds the download (packed or unpacked, in DATA_DIR or DATA_DIR/DATASET/); the output goes to DATA_DIR/DATASET/ "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--drop-orphans",
        action="store_true",
        default=argparse.SUPPRESS,
        help="AliExpress: drop item rows whose search id has no user row, and report how many (default: stop with an error)",
    )
    parser.add_argument(
        "--drop-unclicked-conversions",
        action="store_true",
        default=argparse.SUPPRESS,
        help="AliCCP: drop impressions converted without a click, and report how many (default: stop with an error)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    # Only the options given: run_recipe refuses an option the dataset's recipe does not have.
    options = {name: True for name in ("drop_orphans", "drop_unclicked_conversions") if getattr(args, name, False)}
    recipe = find_recipe(args.dataset)
    for line in run_recipe(args.dataset, args.data_dir, progress=not args.no_progress, **options):
        print(line)
    print(f"next: mtrec train --dataset {args.dataset} --data-dir {args.data_dir}   (downloaded from {recipe.download})")
    return 0
