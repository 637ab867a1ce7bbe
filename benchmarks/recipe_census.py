"""Speed and peak memory of the CensusIncome recipe on generated downloads of the real size and larger.

For each scale, a download of scale x (199,523 training + 99,762 test lines) is generated in the
layout UCI serves (``census+income+kdd.zip`` > ``census.tar.gz`` > the two text files), then the
recipe runs alone in a fresh process:

    python -c "from mtreclib.recipes import run_recipe; run_recipe('CensusIncome', DIR, progress=False)"

Figures: wall seconds, lines per second, MB/s of uncompressed raw text, peak RSS, and the Parquet
size. Peak RSS at a larger scale next to scale 1 shows whether memory grows with the rows (it
should not: the files go through in pieces).

    .venv/bin/python benchmarks/recipe_census.py --work /tmp/bench-census --scales 1 4
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import time
from pathlib import Path

from _measure import ROOT, measure, python, save

sys.path.insert(0, str(ROOT / "tests"))
from generators.census import CensusConfig, generate_download  # noqa: E402

TRAIN_LINES, TEST_LINES = 199_523, 99_762
_RUN = (
    "import sys; from mtreclib.recipes import run_recipe\n"
    "print('\\n'.join(run_recipe('CensusIncome', sys.argv[1], progress=False).lines()))"
)


def raw_text_bytes(zip_path: Path) -> int:
    """Uncompressed size of the two text files inside the zip's tar.gz."""
    import zipfile

    with zipfile.ZipFile(zip_path) as archive, archive.open("census.tar.gz") as member, tarfile.open(fileobj=member, mode="r|gz") as tar:
        return sum(info.size for info in tar if info.name.startswith("census-income.") and not info.name.endswith(".names"))


def one_scale(work: Path, scale: int, reuse: bool) -> dict:
    folder = work / f"scale_{scale}"
    zip_path = folder / "census+income+kdd.zip"
    generated = None
    if not (reuse and zip_path.is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        generate_download(folder, CensusConfig(train_rows=TRAIN_LINES * scale, test_rows=TEST_LINES * scale, seed=scale))
        generated = round(time.perf_counter() - start, 1)
    shutil.rmtree(folder / "CensusIncome", ignore_errors=True)
    lines = (TRAIN_LINES + TEST_LINES) * scale
    raw_bytes = raw_text_bytes(zip_path)
    run = measure(python("-c", _RUN, str(folder)))
    parquet_bytes = sum(p.stat().st_size for p in (folder / "CensusIncome").glob("*.parquet"))
    return {
        "scale": scale,
        "lines": lines,
        "generate_seconds": generated,
        "zip_mb": round(zip_path.stat().st_size / 1e6, 1),
        "raw_text_mb": round(raw_bytes / 1e6, 1),
        "seconds": round(run.seconds, 2),
        "lines_per_second": round(lines / run.seconds),
        "raw_mb_per_second": round(raw_bytes / 1e6 / run.seconds, 1),
        "peak_rss_mb": round(run.peak_rss_mb),
        "parquet_mb": round(parquet_bytes / 1e6, 1),
        "summary": run.stdout.strip().splitlines(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="scratch folder (about 160 MB of text per scale unit while generating)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4], help="multiples of the real line counts")
    parser.add_argument("--reuse", action="store_true", help="keep downloads already generated in WORK")
    parser.add_argument("--clean", action="store_true", help="delete the generated files afterwards")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    work = Path(args.work)
    results = []
    for scale in args.scales:
        results.append(one_scale(work, scale, args.reuse))
        print(results[-1], flush=True)
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    save(args.out, {"benchmark": "recipe_census", "results": results})


if __name__ == "__main__":
    main()
