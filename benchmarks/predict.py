"""Scoring speed and memory of ``mtrec predict`` against ``mtrec evaluate``'s scoring on the same rows.

Generates an AliExpress-shaped Parquet file of ``--rows`` rows (16 categorical fields with
integer ids through built vocabularies, a multi-valued field of 0-5 tags, 63 numerical features,
click and conversion) and a small training file, trains MMoE at the library's defaults for a
few steps (``mtrec train --max-steps``), then runs, each in a fresh process measured alone:

    predict    ``predict_file`` (what ``mtrec predict`` runs): Parquet in, chunk by chunk encoded
               with the checkpoint's encoders on a background thread, scored, written to Parquet
    evaluate   ``mtrec evaluate``'s scoring (``mtreclib.scoring``) of the same rows already encoded
               in the dataset cache (built beforehand, not timed): batches cut from memory-mapped
               arrays, no parsing

and reports each one's samples/s (scoring alone, after start-up and loading) and peak RSS
(``wait4`` of the child). Bounded memory shows as predict's peak staying flat as ``--rows``
grows; evaluate holds its predictions for the whole split.

    python benchmarks/predict.py --work /tmp/predict-bench --rows 1000000 --out predict.json
    python benchmarks/predict.py --work /tmp/predict-bench-small --rows 20000 --train-rows 5000   # a quick check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _measure import ROOT, measure, python, save

FIELD_DIMS = (4, 3, 7, 3, 21, 10, 54, 8, 8, 3, 12, 40, 6, 150, 900, 3000)  # the built-in dataset's
NUMERICAL = 63
TAGS = 200
CHUNK = 100_000

SPEC = """\
format: parquet
train: {train}
test: {test}
categorical: [{categorical}]
multi_valued: [{{name: tags, pooling: mean}}]
numerical: [{numerical}]
labels: [click, conversion]
implies: {{conversion: click}}
"""

CHILD_PREDICT = r"""
import json, sys, time
from mtreclib.serving.inference import load_checkpoint
from mtreclib.serving.streaming import predict_file
checkpoint, source, output = sys.argv[1:4]
inference = load_checkpoint(checkpoint)
summary = predict_file(inference, source, output, id_columns=["row_id"])
print(json.dumps({"rows": summary.rows, "seconds": summary.seconds}))
"""

CHILD_EVALUATE = r"""
import json, sys, time
from mtreclib.core.metrics import logit_metrics
from mtreclib.data.datasets import load_dataset
from mtreclib.serving.evaluation import table_logits
from mtreclib.serving.inference import load_checkpoint
checkpoint, spec = sys.argv[1:3]
inference = load_checkpoint(checkpoint)
test = load_dataset(spec, progress=False).select_tasks(inference.tasks).test
start = time.perf_counter()
metrics = logit_metrics(table_logits(inference, test), test.label_rows(), inference.tasks)
print(json.dumps({"rows": len(test), "seconds": time.perf_counter() - start, "metrics": metrics}))
"""


def write_rows(path: Path, rows: int, seed: int) -> None:
    """``rows`` generated rows, written 100k at a time (the generator's memory stays small)."""
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        columns: dict[str, pa.Array] = {"row_id": pa.array(np.arange(start, start + n))}
        for f, dim in enumerate(FIELD_DIMS):
            # Skewed ids, a few beyond the training vocabulary.
            columns[f"categorical_{f + 1}"] = pa.array(np.minimum(rng.zipf(1.3, n), dim + 5) - 1)
        lengths = rng.integers(0, 6, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        columns["tags"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, TAGS, int(offsets[-1]))))
        numerical = rng.standard_normal((n, NUMERICAL), dtype=np.float32)
        for j in range(NUMERICAL):
            columns[f"numerical_{j + 1}"] = pa.array(numerical[:, j])
        click = rng.random(n) < 0.2
        columns["click"] = pa.array(click.astype(np.int8))
        columns["conversion"] = pa.array((click & (rng.random(n) < 0.1)).astype(np.int8))
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def write_spec(path: Path, train: str, test: str) -> None:
    categorical = ", ".join(f"categorical_{f + 1}" for f in range(len(FIELD_DIMS)))
    numerical = ", ".join(f"numerical_{j + 1}" for j in range(NUMERICAL))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPEC.format(train=train, test=test, categorical=categorical, numerical=numerical))


def prepare(work: Path, rows: int, train_rows: int, steps: int) -> tuple[Path, Path, Path]:
    """The rows to score, a checkpoint trained on other rows, and a spec whose test split is the rows."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    source = data / f"score_{rows}.parquet"
    if not source.is_file():
        write_rows(data / "train.parquet", train_rows, seed=1)
        write_rows(data / "small_test.parquet", 2048, seed=2)
        write_rows(source, rows, seed=3)
    write_spec(data / "train_spec" / "dataset.yaml", "../train.parquet", "../small_test.parquet")
    save_dir = work / "chkpt"
    if not save_dir.is_dir():
        subprocess.run(
            [sys.executable, "-m", "mtreclib", "train", "--model", "mmoe", "--dataset", str(data / "train_spec" / "dataset.yaml"),
             "--epochs", "1", "--max-steps", str(steps), "--patience", "0", "--save-dir", str(save_dir), "--no-progress"],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    checkpoint = next(save_dir.glob("*/run-1"))
    # The same training file (so the same vocabularies), the rows to score as the test split.
    spec = data / f"eval_{rows}" / "dataset.yaml"
    write_spec(spec, "../train.parquet", f"../{source.name}")
    subprocess.run([sys.executable, "-c", "import sys; from mtreclib.data.datasets import load_dataset; load_dataset(sys.argv[1], progress=False)", str(spec)],
                   check=True, cwd=ROOT)  # fmt: skip
    return source, checkpoint, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a folder for the generated data, the checkpoint and the scores")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to score (default: %(default)s)")
    parser.add_argument("--train-rows", type=int, default=50_000, help="rows the checkpoint is trained on (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="training steps (default: %(default)s)")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    source, checkpoint, spec = prepare(work, args.rows, args.train_rows, args.steps)
    output = work / "scores.parquet"
    results = {"rows": args.rows, "model": "mmoe (library defaults)", "checkpoint": str(checkpoint)}
    for name, command in (
        ("predict", python("-c", CHILD_PREDICT, str(checkpoint), str(source), str(output))),
        ("evaluate", python("-c", CHILD_EVALUATE, str(checkpoint), str(spec))),
    ):
        run = measure(command)
        child = json.loads(run.stdout.strip().splitlines()[-1])
        results[name] = {
            "rows": child["rows"],
            "scoring_seconds": round(child["seconds"], 2),
            "samples_per_sec": round(child["rows"] / child["seconds"]),
            "process_seconds": round(run.seconds, 2),
            "peak_rss_mb": round(run.peak_rss_mb),
        }
    scores = pq.read_table(output, columns=["row_id"])["row_id"].to_numpy()
    results["predict"]["rows_in_input_order"] = bool(np.array_equal(scores, np.arange(args.rows)))
    results["predict_vs_evaluate_speed"] = round(results["predict"]["samples_per_sec"] / results["evaluate"]["samples_per_sec"], 2)
    save(args.out, results)


if __name__ == "__main__":
    main()
