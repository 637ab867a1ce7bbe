"""Speed and peak memory of `mtrec preprocess` (raw zips -> processed CSV) and of building the cache.

For each size, a raw download of N training item rows (and N/5 test rows) is generated in the
real layout (outer zip of four inner zips, deflate level 1 to save generation time), then each
stage runs alone in a fresh process:

    preprocess   python -m mtreclib preprocess --data-dir DIR --no-progress
    cache        load_dataset(AliExpress_NL) on the processed CSVs   (the build `mtrec train` does once)

Figures: wall seconds, item rows per second, MB/s of uncompressed raw CSV (preprocess) or of
processed CSV (cache), and peak RSS. ``--same-pages`` adds a run at the largest size with as many
search pages as the smallest, which separates the growth of the user table (held by design) from
anything that grows with item rows.

    flock /work/cpu.lock .venv/bin/python benchmarks/data_preprocess.py --work /tmp/bench --rows 1000000 5000000 --same-pages

The processed files stay under WORK/raw_N/AliExpress_NL/ for data_startup.py and data_memory.py
unless --clean is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

from _measure import measure, python, save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from generators.aliexpress import RawConfig, generate_download  # noqa: E402


def raw_csv_bytes(outer: Path) -> int:
    """Uncompressed size of the four CSVs inside the outer zip."""
    total = 0
    with zipfile.ZipFile(outer) as archive:
        for name in archive.namelist():
            with archive.open(name) as member, zipfile.ZipFile(member) as inner:
                total += sum(info.file_size for info in inner.infolist())
    return total


def one_size(work: Path, config: RawConfig, label: str, reuse: bool) -> dict:
    folder = work / label
    outer = folder / "aliexpress_NL_datasets.zip"
    generated = None
    if not (reuse and outer.is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        generate_download(folder, config, compresslevel=1)
        generated = round(time.perf_counter() - start, 1)
    shutil.rmtree(folder / "AliExpress_NL", ignore_errors=True)
    items = config.train_items + config.test_items
    raw_bytes = raw_csv_bytes(outer)
    run = measure(python("-m", "mtreclib", "preprocess", "--data-dir", str(folder), "--no-progress"))
    processed = folder / "AliExpress_NL"
    processed_bytes = sum((processed / f"{split}.csv").stat().st_size for split in ("train", "test"))
    build = measure(
        python(
            "-c",
            "import sys; from mtreclib.data.datasets import load_dataset\n"
            "load_dataset('AliExpress_NL', sys.argv[1], progress=False)",
            str(folder),
        )
    )
    cache_bytes = sum(p.stat().st_size for p in (processed / "mtrec-cache").rglob("*.npy"))
    return {
        "label": label,
        "train_items": config.train_items,
        "test_items": config.test_items,
        "pages": run.stdout.split(" pages")[0].rsplit(" on ", 1)[1],
        "generate_seconds": generated,
        "zip_mb": round(outer.stat().st_size / 1e6, 1),
        "raw_csv_mb": round(raw_bytes / 1e6, 1),
        "preprocess": {
            "seconds": round(run.seconds, 1),
            "rows_per_second": round(items / run.seconds),
            "raw_mb_per_second": round(raw_bytes / 1e6 / run.seconds, 1),
            "peak_rss_mb": round(run.peak_rss_mb),
        },
        "processed_csv_mb": round(processed_bytes / 1e6, 1),
        "cache": {
            "seconds": round(build.seconds, 1),
            "rows_per_second": round(items / build.seconds),
            "csv_mb_per_second": round(processed_bytes / 1e6 / build.seconds, 1),
            "peak_rss_mb": round(build.peak_rss_mb),
            "cache_mb": round(cache_bytes / 1e6, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="scratch folder (gigabytes at 5M rows)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000], help="training item rows")
    parser.add_argument("--items-per-page", type=float, default=12.0)
    parser.add_argument("--same-pages", action="store_true", help="also the largest size with the smallest size's page count")
    parser.add_argument("--reuse", action="store_true", help="keep raw zips already generated in WORK")
    parser.add_argument("--clean", action="store_true", help="delete the generated files afterwards")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    work = Path(args.work)
    results = []
    for rows in args.rows:
        config = RawConfig(train_items=rows, test_items=rows // 5, items_per_page=args.items_per_page)
        results.append(one_size(work, config, f"raw_{rows}", args.reuse))
        print(results[-1], flush=True)
    if args.same_pages and len(args.rows) > 1:
        small, large = min(args.rows), max(args.rows)
        config = RawConfig(train_items=large, test_items=large // 5, items_per_page=args.items_per_page * large / small)
        results.append(one_size(work, replace(config), f"raw_{large}_same_pages", args.reuse))
        print(results[-1], flush=True)
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    save(args.out, {"benchmark": "data_preprocess", "results": results})


if __name__ == "__main__":
    main()
