"""What a user looks at before training: rows per split, label rates, and per field the vocabulary,
out-of-vocabulary share on test, missing values and multi-valued lengths.

For a spec's dataset the figures come from what the cache counted while it encoded each split
(no pass over the data); for in-memory data they are counted here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtreclib.data.cache import LENGTH_BINS, unknown_ids
from mtreclib.data.datasets import Dataset
from mtreclib.data.encoders import Encoders
from mtreclib.data.table import MultiTaskTable


def split_stats(table: MultiTaskTable, unknown: np.ndarray) -> dict[str, Any]:
    """The cache's statistics of an in-memory split, counted now (``unknown``: each field's unknown id)."""
    stats: dict[str, Any] = {
        "rows": len(table),
        # A regression target's "positives" are the sum of its values (its positive_rate is its mean).
        "positives": table.labels.sum(axis=0, dtype=np.int64 if table.labels.dtype == np.uint8 else np.float64).tolist(),
        "zero_ids": (table.categorical == unknown).sum(axis=0).tolist(),
        "missing": [0] * table.categorical.shape[1],
        "numerical_missing": [0] * table.numerical.shape[1],
        "bag_zero_ids": [int((bag.values == 0).sum()) for bag in table.bags],
        "bag_lengths": [],
    }
    for k in range(len(table.bags)):
        stats["bag_lengths"].append(np.bincount(np.minimum(table.bag_lengths(k), LENGTH_BINS), minlength=LENGTH_BINS + 1).tolist())
    return stats


def _quantile(histogram: list[int], q: float) -> int:
    counts = np.asarray(histogram)
    cumulative = np.cumsum(counts)
    return int(np.searchsorted(cumulative, q * cumulative[-1])) if cumulative[-1] else 0


def inspect(dataset: Dataset) -> dict[str, Any]:
    """The inspection of ``dataset`` as plain data (``mtrec inspect`` prints it; ``--json`` writes it)."""
    schema = dataset.schema
    splits = {name: t for name, t in (("train", dataset.train), ("valid", dataset.valid), ("test", dataset.test)) if t is not None}
    unknown = unknown_ids(Encoders.from_dict(dataset.encoding)) if dataset.encoding else np.zeros(schema.field_num, np.int64)
    stats = dataset.stats or {name: split_stats(t, unknown) for name, t in splits.items()}
    report: dict[str, Any] = {"dataset": dataset.name, "splits": {}, "tasks": list(schema.task_names), "fields": [], "bags": [], "numerical": []}
    # A regression task's positive_rate is the mean of its (transformed) target.
    report["regression_tasks"] = [schema.task_names[t] for t in schema.regression_tasks]
    for name, s in stats.items():
        report["splits"][name] = {"rows": s["rows"], "positive_rate": {t: p / max(s["rows"], 1) for t, p in zip(schema.task_names, s["positives"])}}
    test = stats.get("test", {})
    for f, (field, dim) in enumerate(zip(schema.field_names, schema.field_dims)):
        rows = max(test.get("rows", 0), 1)
        unseen = test.get("zero_ids", [0] * schema.field_num)[f] if test else None
        report["fields"].append(
            {
                "name": field,
                "vocabulary": dim,
                "role": schema.field_roles[f] if schema.field_roles else None,
                "test_out_of_vocabulary": None if unseen is None else unseen / rows,
                "missing": {name: s["missing"][f] for name, s in stats.items()},
            }
        )
    for k, bag in enumerate(schema.bags):
        train = stats["train"]
        histogram = train["bag_lengths"][k]
        total = sum(i * c for i, c in enumerate(histogram))
        report["bags"].append(
            {
                "name": bag.name,
                "vocabulary": bag.vocab_size,
                "pooling": bag.pooling,
                "weighted": bag.weighted,
                "length_mean": total / max(train["rows"], 1),
                "length_p50": _quantile(histogram, 0.5),
                "length_p95": _quantile(histogram, 0.95),
                "length_max": max((i for i, c in enumerate(histogram) if c), default=0),
                "empty_share": histogram[0] / max(train["rows"], 1),
                "test_out_of_vocabulary": test["bag_zero_ids"][k] / max(sum(i * c for i, c in enumerate(test["bag_lengths"][k])), 1) if test else None,
            }
        )
    names = [e["spec"]["name"] for e in dataset.encoding.get("numerical", [])] or [f"numerical_{j + 1}" for j in range(schema.numerical_num)]
    for j, name in enumerate(names[: schema.numerical_num]):
        report["numerical"].append({"name": name, "missing": {n: s["numerical_missing"][j] for n, s in stats.items()}})
    return report


def format_inspection(report: dict[str, Any]) -> str:
    lines = [f"dataset {report['dataset']}"]
    lines.append(f"{'split':<8} {'rows':>12}  " + "  ".join(f"{t:>12}" for t in report["tasks"]))
    for name, s in report["splits"].items():
        regression = report.get("regression_tasks", [])
        rates = (f"{'mean ' + format(s['positive_rate'][t], '.4g'):>12}" if t in regression else f"{s['positive_rate'][t]:>12.4%}" for t in report["tasks"])
        lines.append(f"{name:<8} {s['rows']:>12,}  " + "  ".join(rates))
    lines.append("")
    splits = "/".join(report["splits"])
    lines.append(f"{'field':<28} {'role':<8} {'vocabulary':>11} {'test OOV':>9} {f'missing ({splits})':>28}")
    for f in report["fields"]:
        oov = "n/a" if f["test_out_of_vocabulary"] is None else f"{f['test_out_of_vocabulary']:.2%}"
        missing = "/".join(f"{v:,}" for v in f["missing"].values())
        lines.append(f"{f['name'][:28]:<28} {f['role'] or '':<8} {f['vocabulary']:>11,} {oov:>9} {missing:>28}")
    if report["bags"]:
        lines.append("")
        lines.append(f"{'multi-valued field':<28} {'vocabulary':>11} {'mean len':>9} {'p50':>5} {'p95':>5} {'max':>6} {'empty':>7} {'test OOV':>9}")
        for b in report["bags"]:
            oov = "n/a" if b["test_out_of_vocabulary"] is None else f"{b['test_out_of_vocabulary']:.2%}"
            lines.append(
                f"{b['name'][:28]:<28} {b['vocabulary']:>11,} {b['length_mean']:>9.2f} {b['length_p50']:>5} {b['length_p95']:>5} "
                f"{b['length_max']:>6} {b['empty_share']:>7.1%} {oov:>9}"
            )
    missing = [n for n in report["numerical"] if any(n["missing"].values())]
    lines.append("")
    lines.append(f"{len(report['numerical'])} numerical features" + ("; with missing values (filled):" if missing else "; none has missing values"))
    for n in missing:
        lines.append(f"  {n['name']}: " + "/".join(f"{v:,}" for v in n["missing"].values()))
    return "\n".join(lines)
