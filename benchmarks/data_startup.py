"""Start-up time of a training run on a processed dataset: with and without the cache.

Each mode runs in a fresh process and times, from the start of the script (after imports), the
load of train.csv and test.csv, the validation split, the model and one optimizer step on the
first shuffled batch, i.e. the time until the first epoch is under way:

    no cache     both CSVs read whole into memory (PyArrow, the spine's path before the cache)
    first run    the cache does not exist yet: it is built, then mapped
    later runs   the cache exists: the arrays are mapped

    flock /work/cpu.lock .venv/bin/python benchmarks/data_startup.py --data-dir /tmp/bench/raw_5000000

The OS page cache is not dropped between runs (that needs root and disturbs other work), so
"later runs" reads mapped pages that may still be in memory, as a second run on the same machine
would.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _measure import measure, python, save

CHILD = r"""
import json, sys, time
import torch
from pathlib import Path
from mtreclib.data.builtin import aliexpress_spec
from mtreclib.data.cache import read_splits
from mtreclib.data.datasets import Dataset, load_dataset
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import split_validation
from mtreclib.models import create_model

mode, data_dir, name = sys.argv[1:4]
start = time.perf_counter()
if mode == "no_cache":
    encoders, tables = read_splits(aliexpress_spec(Path(data_dir) / name, name))
    dataset = Dataset(name, encoders.schema(), tables["train"], tables["test"])
else:
    dataset = load_dataset(name, data_dir, progress=False)
loaded = time.perf_counter() - start
train, valid = split_validation(dataset.train, 0.1)
torch.manual_seed(0)
model = create_model("mmoe", dataset.schema, embed_dim=128, expert_num=8)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
batch = next(iter(BatchLoader(train, 2048, shuffle=True, drop_last=True)))
loss = model.training_loss([batch])
optimizer.zero_grad()
loss.backward()
optimizer.step()
print(json.dumps({"load_seconds": loaded, "first_step_seconds": time.perf_counter() - start, "rows": len(dataset.train)}))
"""


def run_mode(mode: str, data_dir: str, dataset: str) -> dict:
    run = measure(python("-c", CHILD, mode, data_dir, dataset))
    child = json.loads(run.stdout.strip().splitlines()[-1])
    return {
        "mode": mode,
        "rows": child["rows"],
        "load_seconds": round(child["load_seconds"], 2),
        "to_first_step_seconds": round(child["first_step_seconds"], 2),
        "process_seconds": round(run.seconds, 2),
        "peak_rss_mb": round(run.peak_rss_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="holds DATASET/train.csv and test.csv")
    parser.add_argument("--dataset", default="AliExpress_NL")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    shutil.rmtree(Path(args.data_dir) / args.dataset / "mtrec-cache", ignore_errors=True)
    results = []
    for mode in ("no_cache", "first_run", "later_run"):
        results.append(run_mode(mode, args.data_dir, args.dataset))
        print(results[-1], file=sys.stderr, flush=True)
    save(args.out, {"benchmark": "data_startup", "results": results})


if __name__ == "__main__":
    main()
