"""Write a Parquet dataset whose id fields are large identity vocabularies (the scale acceptance run).

``--fields`` id fields of ``--ids`` ids each (``vocabulary: identity``: ids used as they are),
drawn from a power law (a few ids frequent, most rare, every id up to ``--ids`` reachable), plus
three small fields and four numerical features. Each id has a latent effect on the click and
the conversion logits, so that a model learns something on the frequent ids; conversion implies
click.

    python benchmarks/identity_dataset.py --out data/big4m --rows 2000000 --ids 4000000
    mtrec train --model mmoe --dataset big4m --data-dir data --embedding-backend torchrec --embed-dim 16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write(out: Path, rows: int, ids: int, fields: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    effects = [rng.normal(0, 1.0, (ids, 2)).astype(np.float32) for _ in range(fields)]
    splits = {"train": rows, "valid": rows // 10, "test": rows // 10}
    for split, n in splits.items():
        columns: dict[str, np.ndarray] = {}
        logit = np.full((n, 2), [-1.0, -2.5], dtype=np.float32)
        for f in range(fields):
            # u^3 over [0, ids): id k is drawn with a probability that falls as k^(-2/3)
            column = np.minimum((ids * rng.random(n) ** 3).astype(np.int64), ids - 1)
            columns[f"id_{f}"] = column
            logit += effects[f][column]
        for name, size in (("city", 300), ("device", 5), ("hour", 24)):
            columns[name] = rng.integers(0, size, n)
        numerical = rng.normal(0, 1, (n, 4)).astype(np.float32)
        logit[:, 0] += numerical[:, 0]
        for m in range(4):
            columns[f"x_{m}"] = numerical[:, m]
        click = rng.random(n) < 1 / (1 + np.exp(-logit[:, 0]))
        buy = click & (rng.random(n) < 1 / (1 + np.exp(-logit[:, 1])))
        columns["click"], columns["buy"] = click.astype(np.int8), buy.astype(np.int8)
        pq.write_table(pa.table(columns), out / f"{split}.parquet", row_group_size=256_000)
    lines = ["format: parquet", "train: train.parquet", "valid: valid.parquet", "test: test.parquet", "categorical:"]
    lines += [f"  - {{name: id_{f}, vocabulary: identity}}" for f in range(fields)]
    lines += ["  - city", "  - device", "  - hour", "numerical: [x_0, x_1, x_2, x_3]", "labels: [click, buy]", "implies: {buy: click}"]
    (out / "dataset.yaml").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}: {rows:,} training rows, {fields} identity fields of {ids:,} ids")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--ids", type=int, default=4_000_000)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.out, args.rows, args.ids, args.fields, args.seed)


if __name__ == "__main__":
    main()
