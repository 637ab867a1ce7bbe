"""Peak memory of training through the cache against a float64 pandas load of the same train.csv.

    pandas float64   the original MTReclib's loader, alone (no training): pd.read_csv(train.csv)
                     .to_numpy() (float64), then its int64 ids, float32 features and labels
    float64 array    rows x 82 x 8 bytes: the to_numpy() array by itself, computed
    cached, 20 steps mtrec train --max-steps 20 (validation and test evaluated in full)
    cached, 1 epoch  mtrec train --epochs 1 --patience 0 (every training row read once), with
                     --full-epoch

Every mode runs alone in a fresh process; peak RSS comes from wait4 and includes the pages of
the memory-mapped cache that the process touched. The cache is built (not measured) first.
pandas comes from the optional extra: pip install -e ".[bench]".

    flock /work/cpu.lock .venv/bin/python benchmarks/data_memory.py --data-dir /tmp/bench/raw_5000000 --full-epoch
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _measure import measure, python, save

PANDAS = r"""
import sys
import numpy as np
import pandas as pd
data = pd.read_csv(sys.argv[1]).to_numpy()[:, 1:]
categorical = data[:, :16].astype(np.int64)
numerical = data[:, 16:-2].astype(np.float32)
labels = data[:, -2:].astype(np.float32)
print(data.dtype, data.shape[0])
"""

BUILD = r"""
import sys
from mtreclib.data.datasets import load_dataset
load_dataset(sys.argv[2], sys.argv[1], progress=False)
"""

# A small model, so that the figure is the data's memory rather than the model's.
TRAIN = ["--model", "mmoe", "--embed-dim", "16", "--expert-num", "4", "--no-save", "--no-progress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="holds DATASET/train.csv and test.csv")
    parser.add_argument("--dataset", default="AliExpress_NL")
    parser.add_argument("--full-epoch", action="store_true", help="also train one whole epoch")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    folder = Path(args.data_dir) / args.dataset
    train_csv = folder / "train.csv"
    measure(python("-c", BUILD, args.data_dir, args.dataset))
    results = []

    def record(mode: str, command: list[str]) -> None:
        run = measure(command)
        results.append({"mode": mode, "seconds": round(run.seconds, 1), "peak_rss_mb": round(run.peak_rss_mb)})
        print(results[-1], file=sys.stderr, flush=True)
        return run

    run = record("pandas float64 load (the original's loader)", python("-c", PANDAS, str(train_csv)))
    rows = int(run.stdout.split()[-1])
    results.append({"mode": "float64 array alone (rows x 82 x 8 bytes)", "peak_rss_mb": round(rows * 82 * 8 / 2**20)})
    base = ["-m", "mtreclib", "train", "--dataset", args.dataset, "--data-dir", args.data_dir, *TRAIN]
    record("cached, mtrec train --max-steps 20", python(*base, "--epochs", "1", "--max-steps", "20"))
    if args.full_epoch:
        record("cached, mtrec train one full epoch", python(*base, "--epochs", "1", "--patience", "0"))
    record("interpreter + torch baseline (mtrec models)", python("-m", "mtreclib", "models"))
    save(args.out, {"benchmark": "data_memory", "train_rows": rows, "results": results})


if __name__ == "__main__":
    main()
