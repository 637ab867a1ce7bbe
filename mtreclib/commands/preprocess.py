"""``mtrec preprocess``: the raw AliExpress download to ``train.csv`` and ``test.csv`` (processed layout)."""

from __future__ import annotations

import argparse

from mtreclib.data.raw import preprocess
from mtreclib.data.rawfiles import COUNTRIES, DATASET_PAGE

NAME = "preprocess"
HELP = "convert the raw AliExpress download (zips or CSVs) to DATA_DIR/DATASET/train.csv and test.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="AliExpress_NL",
        help=f"one of {', '.join(f'AliExpress_{c}' for c in COUNTRIES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        default="data",
        help=f"holds aliexpress_CC_datasets.zip from {DATASET_PAGE}, or its inner zips or CSVs; "
        "the output goes to DATA_DIR/DATASET/ (default: %(default)s)",
    )
    parser.add_argument(
        "--drop-orphans",
        action="store_true",
        help="drop item rows whose search id has no user row, and report how many (default: stop with an error)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    reports = preprocess(args.data_dir, args.dataset, drop_orphans=args.drop_orphans, progress=not args.no_progress)
    for split, r in reports.items():
        line = (
            f"{split}: {r.rows:,} rows from {r.items:,} item rows on {r.pages:,} pages, {r.clicks:,} clicks, "
            f"{r.conversions:,} conversions; {r.raw_bytes / 1e6:,.0f} MB of CSV in {r.seconds:.1f} s "
            f"({r.items / r.seconds:,.0f} rows/s)"
        )
        if r.orphans:
            line += f"; dropped {r.orphans:,} item rows whose search id has no user row"
        if r.pages_without_items:
            line += f"; {r.pages_without_items:,} pages have no item rows"
        print(line)
    print(f"wrote {args.data_dir}/{args.dataset}/train.csv and test.csv; next: mtrec train --dataset {args.dataset} --data-dir {args.data_dir}")
    return 0
