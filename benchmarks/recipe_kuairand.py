"""Speed and peak memory of the KuaiRandPure recipe on generator-made downloads of the real size.

For each scale, a download in the real layout (``KuaiRand-Pure.tar.gz``, gzip level 1 to save
generation time) is generated with the real table sizes (27,285 users, 7,583 videos) and
``scale`` times the real log sizes (1,141,000 + 295,609 standard rows, 1,186,059 random rows), then
the recipe runs alone in a fresh process:

    python -c "from mtreclib.recipes import run_recipe; run_recipe('KuaiRandPure', DIR, progress=False)"

Figures: wall seconds, log rows per second, MB/s of uncompressed log CSV, peak RSS, and the size
of the Parquet output. Two scales with the same user and video tables show whether memory grows
with the log (it should not: only the tables are held).

    .venv/bin/python benchmarks/recipe_kuairand.py --work /tmp/bench-kuairand --scale 0.5 1
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
from generators.kuairand import KuaiRandConfig, generate_download  # noqa: E402

REAL = KuaiRandConfig(users=27_285, videos=7_583, early_rows=1_141_000, late_rows=295_609, random_rows=1_186_059)


def one_scale(work: Path, scale: float, reuse: bool) -> dict:
    config = KuaiRandConfig(
        users=REAL.users,
        videos=REAL.videos,
        early_rows=round(REAL.early_rows * scale),
        late_rows=round(REAL.late_rows * scale),
        random_rows=round(REAL.random_rows * scale),
    )
    folder = work / f"scale_{scale:g}"
    archive = folder / "KuaiRand-Pure.tar.gz"
    generated = None
    if not (reuse and archive.is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        generate_download(folder, config, packed=True, compresslevel=1)
        generated = round(time.perf_counter() - start, 1)
    shutil.rmtree(folder / "KuaiRandPure", ignore_errors=True)
    run = measure(
        python(
            "-c",
            "import sys; from mtreclib.recipes import run_recipe\n"
            "print('\\n'.join(run_recipe('KuaiRandPure', sys.argv[1], progress=False).lines()))",
            str(folder),
        )
    )
    with tarfile.open(archive) as tar:
        log_bytes = sum(m.size for m in tar.getmembers() if "log_" in m.name)
    rows = config.early_rows + config.late_rows + config.random_rows
    output = folder / "KuaiRandPure"
    return {
        "scale": scale,
        "log_rows": rows,
        "users": config.users,
        "videos": config.videos,
        "generate_seconds": generated,
        "archive_mb": round(archive.stat().st_size / 1e6, 1),
        "log_csv_mb": round(log_bytes / 1e6, 1),
        "seconds": round(run.seconds, 1),
        "rows_per_second": round(rows / run.seconds),
        "log_mb_per_second": round(log_bytes / 1e6 / run.seconds, 1),
        "peak_rss_mb": round(run.peak_rss_mb),
        "parquet_mb": round(sum(p.stat().st_size for p in output.glob("*.parquet")) / 1e6, 1),
        "summary": run.stdout.strip().splitlines(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="scratch folder (about 0.2 GB per unit of scale)")
    parser.add_argument("--scale", type=float, nargs="+", default=[0.5, 1.0], help="log sizes as multiples of the real ones")
    parser.add_argument("--reuse", action="store_true", help="keep archives already generated in WORK")
    parser.add_argument("--clean", action="store_true", help="delete the generated files afterwards")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    work = Path(args.work)
    results = []
    for scale in args.scale:
        results.append(one_scale(work, scale, args.reuse))
        print(results[-1], flush=True)
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    save(args.out, {"benchmark": "recipe_kuairand", "results": results})


if __name__ == "__main__":
    main()
