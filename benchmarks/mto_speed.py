"""Training speed of MMoE with every multi-task optimisation strategy, against equal weighting.

For each strategy (every registered one, plus MGDA-UB and the vmapped per-task gradients), in a
process of its own (so that its peak memory is its own and no strategy warms another's caches):
the library's ``Trainer`` trains ``--warmup`` optimizer steps, then ``--steps`` timed steps, of
MMoE at the library's defaults (embed 128, experts (512, 256) x 8, towers (128, 64), batch 2048)
on the built-in dataset. Every process sees the same rows in the same order (same seed), so the
strategies differ only in how they turn the task losses into gradients.

    flock /work/cpu.lock python benchmarks/mto_speed.py --out benchmarks/mto_speed.json

prints a Markdown table: samples/s, relative to ``ew``, and peak memory. On a shared machine the
figures mean little; measure on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from mtreclib.core.atomic import write_json

# (label, strategy, settings): every registered strategy at its defaults, then the options that
# change what a step costs.
EXTRA = [
    ("mgda (upper bound)", "mgda", {"mgda_upper_bound": True}),
    ("pcgrad (batched grads)", "pcgrad", {"mto_batched_grads": True}),
    ("nashmtl (every 5 steps)", "nashmtl", {"nashmtl_update_every": 5}),
]


def runs(names: list[str]) -> list[tuple[str, str, dict]]:
    from mtreclib.mto import list_strategies

    names = list_strategies() if names == ["all"] else names
    plain = [(name, name, {"task_weights": (1.0, 1.0)} if name == "fixed" else {}) for name in names]
    return plain + [run for run in EXTRA if run[1] in names]


def measure(args: argparse.Namespace) -> dict:
    """One strategy: the worker behind every row of the table."""
    from dataclasses import replace

    from mtreclib.config.experiment import TrainConfig
    from mtreclib.data import synthetic
    from mtreclib.data.datasets import generated_dataset
    from mtreclib.models import create_model
    from mtreclib.mto import create_strategy
    from mtreclib.training.trainer import Trainer

    device = torch.device(args.device)
    rows = args.batch_size * (args.warmup + args.steps)
    config = replace(synthetic.PRESETS["synthetic"], train_rows=rows, test_rows=1000)
    dataset = generated_dataset(f"synthetic_{rows}_rows", config, "data", progress=False)
    torch.manual_seed(0)
    model = create_model("mmoe", dataset.schema).to(device)
    strategy = create_strategy(args.strategy, model.task_num, **json.loads(args.settings))
    config = TrainConfig(epochs=1000, batch_size=args.batch_size, patience=0, max_steps=args.warmup)
    trainer = Trainer(model, config, device, strategy=strategy, progress=False)
    no_validation = dataset.train.select(slice(0, 0))
    trainer.fit(dataset.train, no_validation)
    trainer.config = replace(config, max_steps=args.steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fit = trainer.fit(dataset.train, no_validation)
    record = {
        "label": args.label,
        "strategy": args.strategy,
        "settings": json.loads(args.settings),
        "train_samples_per_sec": fit.samples_per_second,
        "steps": fit.steps,
        "batch_size": args.batch_size,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        record["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return record


def worker_command(args: argparse.Namespace, label: str, strategy: str, settings: dict) -> list[str]:
    return [
        sys.executable, __file__, "--worker", f"--label={label}", f"--strategy={strategy}", f"--settings={json.dumps(settings)}",
        f"--batch-size={args.batch_size}", f"--warmup={args.warmup}", f"--steps={args.steps}", f"--device={args.device}",
    ]  # fmt: skip


def markdown(records: list[dict]) -> str:
    base = next((r for r in records if r["label"] == "ew"), None)
    lines = ["| strategy | train samples/s | vs ew | peak RSS MiB |", "|---|--:|--:|--:|"]
    for r in records:
        relative = f"{r['train_samples_per_sec'] / base['train_samples_per_sec']:.2f}x" if base else "-"
        lines.append(f"| {r['label']} | {r['train_samples_per_sec']:,.0f} | {relative} | {r['peak_rss_mib']:,.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["all"], help="registered names, or all (default)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps before timing")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write every record as JSON here")
    # A worker measures one strategy and prints one JSON line.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args)), flush=True)
        return 0
    records = []
    for label, strategy, settings in runs(args.strategies):
        out = subprocess.run(worker_command(args, label, strategy, settings), check=True, capture_output=True, text=True).stdout
        records.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)
    print(markdown(records))
    if args.out:
        write_json(args.out, {"records": records, "argv": sys.argv[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
