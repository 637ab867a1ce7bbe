"""Training speed and peak memory against the vocabulary: the dense backend against the torchrec one.

MMoE (the original's widths, 8 experts) over ``--fields`` single-valued fields whose vocabularies
add up to each ``--ids`` total, embed ``--embed-dim``, batch ``--batch-size``; ids drawn uniformly
over each field's vocabulary (the worst case for the tables: nearly every lookup a row of its
own). Each (backend, ids) runs in a process of its own: the library's ``Trainer`` makes two
epochs of ``--steps`` steps, the first to warm up, the second timed; the peak resident memory is
the process's whole run (``wait4``). A dense run whose weights, gradient and Adam state would not
fit in ``--memory-limit`` GiB is not started and reported as such.

    python benchmarks/vocabulary.py --ids 1e4 1e6 1e7 1e8 --out benchmarks/vocabulary.json

``--builtin`` instead trains MMoE and PLE for ``--steps`` steps on the built-in dataset with each
backend (its small vocabularies: what the torchrec backend costs where tables are small).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import measure  # noqa: E402


def one(args: argparse.Namespace) -> None:
    """The child: train and print one JSON line."""
    import numpy as np
    import torch

    from mtreclib.config.experiment import ExperimentConfig
    from mtreclib.config.resolve import with_changes
    from mtreclib.core.distributed import ProcessPlace
    from mtreclib.core.schema import FeatureSchema
    from mtreclib.data.table import MultiTaskTable
    from mtreclib.training.experiment import build_training_model, parameter_count
    from mtreclib.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    ids = int(float(args.one_ids))
    per_field = max(ids // args.fields, 1)
    schema = FeatureSchema(field_dims=(per_field,) * args.fields, numerical_num=args.numerical)
    config = with_changes(
        ExperimentConfig(),
        model=args.model,
        embed_dim=args.embed_dim,
        batch_size=args.batch_size,
        epochs=2,
        patience=0,
        embedding_backend=args.one_backend,
        save=False,
        progress=False,
        device="cpu",
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    model, _ = build_training_model(config, schema, device, ProcessPlace())
    build_seconds = time.perf_counter() - start
    rows = args.batch_size * args.steps
    generator = np.random.default_rng(0)
    categorical = generator.integers(0, per_field, size=(rows, args.fields), dtype=np.int32)
    numerical = generator.random((rows, args.numerical), dtype=np.float32)
    labels = (generator.random((rows, 2)) < [0.2, 0.05]).astype(np.uint8)
    labels[:, 1] &= labels[:, 0]
    table = MultiTaskTable(categorical, numerical, labels)
    empty = MultiTaskTable(categorical[:0], numerical[:0], labels[:0])
    trainer = Trainer(model, config.train, device, progress=False)
    fit = trainer.fit(table, empty)
    timed = fit.history[-1]["train_seconds"]
    print(json.dumps({
        "backend": args.one_backend, "ids": ids, "parameters": parameter_count(model), "build_seconds": build_seconds,
        "samples_per_second": rows / timed, "step_seconds": timed / args.steps,
    }))


def builtin(args: argparse.Namespace) -> None:
    """The child for ``--builtin``: two epochs of ``--steps`` steps over the built-in dataset's first
    rows, the original's configuration (embed 128, batch 2048), the second epoch timed."""
    import torch

    from mtreclib.config.experiment import ExperimentConfig
    from mtreclib.config.resolve import with_changes
    from mtreclib.core.distributed import ProcessPlace
    from mtreclib.data.datasets import load_dataset
    from mtreclib.training.experiment import build_training_model
    from mtreclib.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    dataset = load_dataset("synthetic", "data")
    config = with_changes(ExperimentConfig(), model=args.model, epochs=2, patience=0, embedding_backend=args.one_backend, save=False, progress=False)
    torch.manual_seed(0)
    model, _ = build_training_model(config, dataset.schema, device, ProcessPlace())
    rows = config.train.batch_size * args.steps
    table = dataset.train.select(slice(0, rows))
    fit = Trainer(model, config.train, device, progress=False).fit(table, dataset.train.select(slice(0, 0)))
    print(json.dumps({"backend": args.one_backend, "model": args.model, "split": args.one_split,
                      "samples_per_second": rows / fit.history[-1]["train_seconds"]}))


def fits(ids: int, args: argparse.Namespace) -> bool:
    """Dense tables: weights, gradient and Adam's two moments, 4 bytes each, within the limit."""
    return 16 * ids * args.embed_dim < args.memory_limit * 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", nargs="+", default=["1e4", "1e6", "1e7", "1e8"], help="total ids over all fields")
    parser.add_argument("--backends", nargs="+", default=["dense", "torchrec"])
    parser.add_argument("--fields", type=int, default=16)
    parser.add_argument("--numerical", type=int, default=0)
    parser.add_argument("--embed-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--model", default="mmoe")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (one warm-up epoch of as many first)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", type=float, default=20.0, help="GiB a dense run may need before it is skipped")
    parser.add_argument("--builtin", action="store_true", help="the built-in dataset, MMoE and PLE, each backend")
    parser.add_argument("--no-split", action="store_true", help="also measure each run with the split first products off")
    parser.add_argument("--out", help="write the records as JSON")
    parser.add_argument("--one-backend", help=argparse.SUPPRESS)
    parser.add_argument("--one-ids", help=argparse.SUPPRESS)
    parser.add_argument("--one-split", default="on", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_split == "off":
        from mtreclib.nn.layers import FieldEmbedding

        FieldEmbedding.split_products = False
    if args.one_backend and args.builtin:
        return builtin(args)
    if args.one_backend:
        return one(args)
    common = ["--fields", str(args.fields), "--numerical", str(args.numerical), "--embed-dim", str(args.embed_dim),
              "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--threads", str(args.threads)]
    records = []
    if args.builtin:
        print("| model | backend | split products | samples/s | peak RSS (MB) |\n|---|---|---|--:|--:|", flush=True)
        for model in ("mmoe", "ple"):
            for backend in args.backends:
                for split in ("on", "off") if args.no_split else ("on",):
                    command = [sys.executable, __file__, "--builtin", "--model", model, "--one-backend", backend, "--one-split", split, *common]
                    run = measure(command)
                    record = {**json.loads(run.stdout.strip().splitlines()[-1]), "peak_rss_mb": run.peak_rss_mb}
                    records.append(record)
                    print(f"| {model} | {backend} | {split} | {record['samples_per_second']:,.0f} | {run.peak_rss_mb:,.0f} |", flush=True)
    else:
        print("| ids | backend | parameters | samples/s | step (s) | peak RSS (MB) | build (s) |\n|--:|---|--:|--:|--:|--:|--:|", flush=True)
        for ids in args.ids:
            for backend in args.backends:
                total = int(float(ids))
                if backend == "dense" and not fits(total, args):
                    records.append({"backend": backend, "ids": total, "skipped": f"needs {16 * total * args.embed_dim / 2**30:.1f} GiB"})
                    print(f"| {total:.0e} | dense | - | does not fit ({16 * total * args.embed_dim / 2**30:.1f} GiB for weights, gradient, Adam) | | | |", flush=True)
                    continue
                run = measure([sys.executable, __file__, "--model", args.model, "--one-backend", backend, "--one-ids", ids, *common])
                record = {**json.loads(run.stdout.strip().splitlines()[-1]), "peak_rss_mb": run.peak_rss_mb, "wall_seconds": run.seconds}
                records.append(record)
                print(f"| {total:.0e} | {backend} | {record['parameters']:,} | {record['samples_per_second']:,.0f} | "
                      f"{record['step_seconds']:.3f} | {run.peak_rss_mb:,.0f} | {record['build_seconds']:.1f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": platform.processor() or platform.machine(), "records": records}, indent=1))


if __name__ == "__main__":
    main()
