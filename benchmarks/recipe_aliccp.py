"""Speed and peak memory of the Ali-CCP recipe (`mtrec preprocess --dataset AliCCP`) as samples grow.

For each size N, a raw download is generated in the real layout (tests/generators/aliccp.py):
``sample_train.tar.gz`` and ``sample_test.tar.gz`` (gzip level 1, to save generation time), N
training samples and N/10 test samples, and per split a pool of ``--common-rows`` common-feature
lines whatever N, so that growth in N is growth in samples only and a flat peak memory means the
recipe streams. Each behaviour list has ``--history`` features on average: 125 makes about 500
user features a common line, as in the real files (8 GB of text for 730,599 lines). Then the
recipe runs alone in a fresh process (`run_recipe` of mtreclib.recipes, what `mtrec preprocess
--dataset AliCCP` calls), and a second process that only imports it gives the memory floor (the
library's imports, torch included).

Figures: wall seconds and CPU seconds (user + system, all threads), samples per second (both
splits), MB/s of uncompressed CSV, peak RSS, the history features of the training split's common
lines, the memory held for the join (indexes and profile ids), the common lines no sample uses
(left out of the side table: with a fixed pool, many at small N), and the output's size on disk
per split: the impression rows (``<split>.parquet``) and the side table (``common_<split>.parquet``).

    .venv/bin/python benchmarks/recipe_aliccp.py --work /tmp/bench-aliccp --rows 1000000 10000000

At 10M samples the generated download is ~2 GB and needs ~4 GB more while it is packed. The full
dataset has 42.3M training samples (and 43M test samples), ~58 per common line.

At the real vocabulary scale (0.4M users, 4.3M items: ``--users 400000 --items 4300000``) with
``--train torchrec``, the preprocessed dataset is then trained for one epoch (``mtrec train
--epochs 1 --patience 0``, the torchrec backend, ``--train-settings`` added) in a process of its
own, its first run building the cache: wall time, samples/s and peak memory.

    .venv/bin/python benchmarks/recipe_aliccp.py --work /tmp/ccp --rows 5000000 --common-rows 400000 \
        --users 400000 --items 4300000 --train torchrec
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import sys
import tarfile
import time
from pathlib import Path

from _measure import ROOT, measure, python, save

sys.path.insert(0, str(ROOT / "tests"))
from generators.aliccp import SPLITS, AliCCPConfig, archive_name, generate_download  # noqa: E402

RUN = (
    "import sys; from mtreclib.recipes import run_recipe\n"
    "print('\\n'.join(run_recipe('AliCCP', sys.argv[1], progress=False).lines()))"
)


def csv_bytes(folder: Path) -> int:
    """Uncompressed size of the CSVs in the two archives."""
    total = 0
    for split in SPLITS:
        with tarfile.open(folder / archive_name(split), "r:gz") as archive:
            total += sum(member.size for member in archive.getmembers())
    return total


def number(text: str) -> int:
    return int(text.replace(",", ""))


def size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def train_one_epoch(folder: Path, backend: str, settings: list[str]) -> dict:
    """One epoch of MMoE on the recipe's output, in a fresh process (its cache built first, timed apart)."""
    common = [sys.executable, "-m", "mtreclib", "train", "--dataset", "AliCCP", "--data-dir", str(folder), "--no-save",
              "--no-progress", "--embedding-backend", backend, *settings]  # fmt: skip
    cache = measure([*common, "--epochs", "1", "--max-steps", "1"])  # builds the cache
    run = measure([*common, "--epochs", "1", "--patience", "0", "--results", str(folder / f"train_{backend}.json")])
    import json

    record = json.loads((folder / f"train_{backend}.json").read_text())
    return {
        "backend": backend,
        "settings": settings,
        "cache_and_one_step_seconds": round(cache.seconds, 1),
        "cache_peak_rss_mb": round(cache.peak_rss_mb),
        "epoch_wall_seconds": round(run.seconds, 1),
        "train_seconds": round(record["train_seconds"], 1),
        "train_samples_per_sec": round(record["train_samples_per_sec"]),
        "peak_rss_mb": round(run.peak_rss_mb),
        "parameters": record["parameters"],
        "rows": record["rows"],
        "test_auc": {task: round(m["auc"], 4) for task, m in record["tasks"].items()},
    }


def one_size(work: Path, config: AliCCPConfig, reuse: bool) -> dict:
    folder = work / f"aliccp_{config.train_samples}"
    generated = None
    if not (reuse and all((folder / archive_name(split)).is_file() for split in SPLITS)):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        generate_download(folder, config, compresslevel=1)
        generated = round(time.perf_counter() - start, 1)
    shutil.rmtree(folder / "AliCCP", ignore_errors=True)
    raw = csv_bytes(folder)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = measure(python("-c", RUN, str(folder)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the measured process (its trampoline waits for it, so it counts as our child's):
    # a figure that a busy shared machine distorts less than wall time.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # The train line of the summary: "... (N history features read, M MB of profiles held) ...; K common-feature lines have no impression".
    train = next(line for line in run.stdout.splitlines() if line.startswith("train:"))
    held = re.search(r"\(([\d,]+) history features read, ([\d,]+) MB of profiles held\)", train)
    unused = re.search(r"([\d,]+) common-feature lines have no impression", train)
    samples = config.train_samples + config.test_samples
    output = folder / "AliCCP"
    return {
        "train_samples": config.train_samples,
        "test_samples": config.test_samples,
        "common_rows_per_split": config.common_rows,
        "history_mean": config.history_mean,
        "generate_seconds": generated,
        "archives_mb": round(sum((folder / archive_name(s)).stat().st_size for s in SPLITS) / 1e6, 1),
        "raw_csv_mb": round(raw / 1e6, 1),
        "seconds": round(run.seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "samples_per_second": round(samples / run.seconds),
        "raw_mb_per_second": round(raw / 1e6 / run.seconds, 1),
        "peak_rss_mb": round(run.peak_rss_mb),
        "train_common_features": number(held.group(1)) if held else None,
        "train_profiles_held_mb": number(held.group(2)) if held else None,
        "train_unused_common_lines": number(unused.group(1)) if unused else 0,
        "output_mb": {split: {"rows": size_mb(output / f"{split}.parquet"), "side_table": size_mb(output / f"common_{split}.parquet")} for split in SPLITS},
        "parquet_mb": round(sum(p.stat().st_size for p in output.glob("*.parquet")) / 1e6, 1),
        "summary": run.stdout.strip().splitlines(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="scratch folder (several GB at 10M samples)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000], help="training samples")
    parser.add_argument("--common-rows", type=int, default=100_000, help="common-feature lines per split, for every size")
    parser.add_argument("--history", type=float, default=125.0, help="mean features of each behaviour list")
    parser.add_argument("--reuse", action="store_true", help="keep downloads already generated in WORK")
    parser.add_argument("--clean", action="store_true", help="delete the generated files afterwards")
    parser.add_argument("--users", type=int, help="user ids (field 101; the real data has ~0.4M)")
    parser.add_argument("--items", type=int, help="item ids (field 205; the real data has ~4.3M)")
    parser.add_argument("--train", choices=["dense", "torchrec"], help="then train one epoch on the output with this backend")
    parser.add_argument("--train-settings", default="", help="more flags for that run (e.g. '--embed-dim 16 --threads 2')")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    work = Path(args.work)
    floor = measure(python("-c", "import mtreclib.recipes.aliccp"))
    results = []
    for rows in args.rows:
        config = AliCCPConfig(
            train_samples=rows,
            test_samples=rows // 10,
            common_rows=args.common_rows,
            history_mean=args.history,
            run_length=20.0,
            click_rate=0.04,
            conversion_rate=0.25,
            vocabulary=tuple((field, n) for field, n in (("101", args.users), ("205", args.items)) if n),
        )
        results.append(one_size(work, config, args.reuse))
        if args.train:
            results[-1]["training"] = train_one_epoch(work / f"aliccp_{rows}", args.train, args.train_settings.split())
        print({k: v for k, v in results[-1].items() if k != "summary"}, flush=True)
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    save(args.out, {"benchmark": "recipe_aliccp", "import_peak_rss_mb": round(floor.peak_rss_mb), "results": results})


if __name__ == "__main__":
    main()
