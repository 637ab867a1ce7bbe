"""Training and evaluation speed of every model, end to end, against this machine's peak.

For each registered model and precision, in a process of its own (so that its peak memory is its
own): the library's ``Trainer`` trains ``--steps`` optimizer steps after ``--warmup`` steps (its
``BatchLoader`` included) and evaluates ``--eval-rows`` test rows (metrics included), on the
built-in dataset with the original's configuration (embed 128, batch 2048, 8 experts).

Share of peak = FLOPs per sample of the *straightforward* computation (the concatenated field
embeddings multiplied densely, as the original does; counted by ``FlopCounterMode`` with
``split_products`` off) x samples/s / the matrix-multiply peak measured here. It can exceed 100%
where the library does less arithmetic than that computation; ``executed`` gives the FLOPs the
fast path really runs.

    flock /work/cpu.lock python benchmarks/throughput.py --baseline --out benchmarks/results.json

prints a Markdown table (and writes the JSON records); ``--baseline`` adds the original's
computation, rebuilt in ``baseline_original.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtreclib.core.atomic import write_json

HERE = Path(__file__).resolve().parent


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, int, int], seconds: float = 3.0) -> float:
    """GFLOP/s of ``(n, k) @ (k, m)`` at ``dtype``, best of repeated products over about ``seconds``."""
    n, k, m = sizes
    a, b = torch.randn(n, k).to(dtype), torch.randn(k, m).to(dtype)
    a @ b
    best, spent = 0.0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - start
        best, spent = max(best, 2 * n * k * m / elapsed / 1e9), spent + elapsed
    return best


def machine_peak() -> dict:
    """Matrix-multiply GFLOP/s at fp32 and bf16, on shapes of the models' largest products."""
    fp32 = max(matmul_peak(torch.float32, s) for s in [(2048, 2176, 4096), (2048, 4096, 2176), (4096, 4096, 4096)])
    bf16 = max(matmul_peak(torch.bfloat16, s) for s in [(1024, 1024, 1024), (2048, 2176, 512)])
    return {
        "fp32_gflops": fp32,
        "bf16_gflops": bf16,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def model_flops(model: torch.nn.Module, batch, *, split: bool) -> tuple[float, float]:
    """(training, evaluation) FLOPs per sample of ``model`` on ``batch``, fast path or straightforward."""
    from mtreclib.nn.layers import set_split_products

    model = copy.deepcopy(model)
    set_split_products(model, split)
    batches = [batch] * model.batches_per_step
    model.train()
    train = count_flops(lambda: model.training_loss(batches).backward()) / (batch.size * len(batches))
    model.eval()
    with torch.inference_mode():
        evaluation = count_flops(lambda: model(batch.categorical, batch.numerical)) / batch.size
    return train, evaluation


def measure(args: argparse.Namespace) -> dict:
    """One model at one precision: the worker behind every row of the table."""
    from dataclasses import replace

    from mtreclib.config.experiment import TrainConfig
    from mtreclib.data.datasets import load_dataset
    from mtreclib.data.loader import BatchLoader
    from mtreclib.models import create_model, model_kwargs
    from mtreclib.nn.layers import set_split_products
    from mtreclib.training.trainer import Trainer

    device = torch.device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir)
    torch.manual_seed(0)
    config = {"embed_dim": args.embed_dim, "expert_num": args.expert_num}
    model = create_model(args.model, dataset.schema, **model_kwargs(args.model, config)).to(device)
    set_split_products(model, not args.straightforward)
    steps = args.bf16_steps if args.precision == "bf16" else args.steps
    train_config = TrainConfig(epochs=1000, batch_size=args.batch_size, patience=0, precision=args.precision, compile=args.compile)
    trainer = Trainer(model, train_config, device, progress=False)
    no_validation = dataset.train.select(slice(0, 0))
    trainer.config = replace(train_config, max_steps=args.bf16_warmup if args.precision == "bf16" else args.warmup)
    trainer.fit(dataset.train, no_validation)
    trainer.config = replace(train_config, max_steps=steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fit = trainer.fit(dataset.train, no_validation)

    eval_rows = min(args.eval_rows if args.precision == "fp32" else args.bf16_eval_rows, len(dataset.test))
    trainer.evaluate(dataset.test.select(slice(0, 2 * args.batch_size)))  # warm-up
    start = time.perf_counter()
    trainer.evaluate(dataset.test.select(slice(0, eval_rows)))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    eval_seconds = time.perf_counter() - start

    batch = next(iter(BatchLoader(dataset.train, args.batch_size, device=device)))
    plain_train, plain_eval = model_flops(model, batch, split=False)
    run_train, run_eval = model_flops(model, batch, split=not args.straightforward)
    record = {
        "model": args.model,
        "implementation": "straightforward" if args.straightforward else "mtreclib",
        "precision": args.precision,
        "compile": args.compile,
        "train_samples_per_sec": fit.samples_per_second,
        "eval_samples_per_sec": eval_rows / eval_seconds,
        "train_flops_per_sample": plain_train,
        "eval_flops_per_sample": plain_eval,
        "executed_train_flops_per_sample": run_train,
        "executed_eval_flops_per_sample": run_eval,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": fit.steps,
        "eval_rows": eval_rows,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        record["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return record


def auc_check(args: argparse.Namespace) -> list[dict]:
    """Train every model at fp32 and at bf16 with the same data and seed; test AUCs side by side.

    On a smaller copy of the built-in dataset (``--auc-train-rows``), so that bf16 runs finish on
    hardware that multiplies bf16 slowly; the model keeps its default configuration.
    """
    from dataclasses import replace

    from mtreclib.config.experiment import ExperimentConfig
    from mtreclib.config.resolve import with_changes
    from mtreclib.data import synthetic
    from mtreclib.data.datasets import generated_dataset
    from mtreclib.training.experiment import run_experiment

    preset = synthetic.PRESETS[args.dataset]
    config = replace(preset, train_rows=args.auc_train_rows, test_rows=args.auc_test_rows)
    dataset = generated_dataset(args.dataset, config, Path(args.data_dir) / "auc-check", progress=False)
    rows = []
    for model in args.models:
        runs = {}
        for precision in ("fp32", "bf16"):
            config = with_changes(
                ExperimentConfig(),
                model=model, dataset=args.dataset, embed_dim=args.embed_dim, expert_num=args.expert_num, device=args.device,
                save=False, progress=False, epochs=args.auc_epochs, batch_size=args.batch_size, patience=0, precision=precision, seed=0,
            )  # fmt: skip
            runs[precision] = run_experiment(config, dataset=dataset, announce=False)
        row = {"model": model}
        for task in runs["fp32"].tasks:
            fp32, bf16 = runs["fp32"].tasks[task].auc, runs["bf16"].tasks[task].auc
            row[task] = {"fp32_auc": fp32, "bf16_auc": bf16, "difference": bf16 - fp32}
        row["oracle"] = {task: m.auc for task, m in (runs["fp32"].oracle or {}).items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def worker_command(args: argparse.Namespace, model: str, precision: str, *, straightforward: bool = False) -> list[str]:
    options = [
        f"--model={model}",
        f"--precision={precision}",
        *[f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("dataset", "data_dir", "batch_size", "embed_dim", "expert_num", "device")],
        *[f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("warmup", "bf16_warmup", "steps", "bf16_steps", "eval_rows", "bf16_eval_rows")],
    ]
    if straightforward:
        options.append("--straightforward")
    if args.compile:
        options.append("--compile")
    return [sys.executable, __file__, "--worker", *options]


def baseline_command(args: argparse.Namespace, model: str) -> list[str]:
    return [
        sys.executable,
        str(HERE / "baseline_original.py"),
        f"--model={model}",
        f"--dataset={args.dataset}",
        f"--data-dir={args.data_dir}",
        f"--batch-size={args.batch_size}",
        f"--embed-dim={args.embed_dim}",
        f"--warmup={args.warmup}",
        f"--steps={args.baseline_steps}",
        f"--eval-rows={args.eval_rows}",
    ]


def run_json(command: list[str]) -> dict:
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def share(record: dict, kind: str, peak: dict) -> float:
    gflops = peak["bf16_gflops" if record["precision"] == "bf16" else "fp32_gflops"]
    return record[f"{kind}_flops_per_sample"] * record[f"{kind}_samples_per_sec"] / 1e9 / gflops


def markdown(records: list[dict], peak: dict) -> str:
    """One row per model and precision, with the original's figures and the speed-ups over them."""
    baseline = {r["model"]: r for r in records if r["implementation"] == "original"}
    lines = [
        "| model | precision | train samples/s | vs original | eval samples/s | vs original | peak RSS MiB "
        "| train share of peak | eval share of peak | original train / eval samples/s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in records:
        if r["implementation"] == "original":
            continue
        base = baseline.get(r["model"])
        train_x = f"{r['train_samples_per_sec'] / base['train_samples_per_sec']:.2f}x" if base else "-"
        eval_x = f"{r['eval_samples_per_sec'] / base['eval_samples_per_sec']:.2f}x" if base else "-"
        original = f"{base['train_samples_per_sec']:,.0f} / {base['eval_samples_per_sec']:,.0f}" if base else "-"
        label = r["precision"] + (" (straightforward)" if r["implementation"] == "straightforward" else "")
        lines.append(
            f"| {r['model']} | {label} | {r['train_samples_per_sec']:,.0f} | {train_x} | {r['eval_samples_per_sec']:,.0f} | "
            f"{eval_x} | {r['peak_rss_mib']:,.0f} | {share(r, 'train', peak):.0%} | {share(r, 'eval', peak):.0%} | {original} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mtreclib.models import list_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["all"], help="registered names, or all (default)")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--baseline", action="store_true", help="also measure the original's computation")
    parser.add_argument("--straightforward", action="store_true", help="also measure mtreclib with split products off")
    parser.add_argument("--peak-only", action="store_true", help="measure the matrix-multiply peak and stop")
    parser.add_argument("--auc-check", action="store_true", help="compare fp32 and bf16 test AUC instead of timing")
    parser.add_argument("--auc-train-rows", type=int, default=20_000, help="training rows of the AUC check")
    parser.add_argument("--auc-test-rows", type=int, default=20_000, help="test rows of the AUC check")
    parser.add_argument("--auc-epochs", type=int, default=1, help="epochs of the AUC check")
    parser.add_argument("--out", type=Path, help="write every record and the peak as JSON here")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--expert-num", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps before timing")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps at fp32")
    parser.add_argument("--bf16-warmup", type=int, default=3, help="optimizer steps before timing at bf16")
    parser.add_argument("--bf16-steps", type=int, default=20, help="timed optimizer steps at bf16")
    parser.add_argument("--baseline-steps", type=int, default=10, help="timed optimizer steps of the original")
    parser.add_argument("--eval-rows", type=int, default=40_960, help="test rows evaluated (timed) at fp32")
    parser.add_argument("--bf16-eval-rows", type=int, default=40_960, help="test rows evaluated (timed) at bf16")
    # A worker measures one model at one precision and prints one JSON line.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=list_models(), help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.models == ["all"]:
        args.models = list_models()
    return args


def baseline_original_models() -> tuple[str, ...]:
    sys.path.insert(0, str(HERE))
    from baseline_original import MODELS

    return MODELS


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args)), flush=True)
        return 0
    if args.auc_check:
        rows = auc_check(args)
        if args.out:
            write_json(args.out, {"auc_check": rows, "argv": sys.argv[1:]})
        return 0
    peak = machine_peak()
    print(json.dumps({"peak": peak}), flush=True)
    records: list[dict] = []
    if not args.peak_only:
        for model in args.models:
            # The original library has only its seven models: the newer ones have no baseline.
            has_original = args.baseline and model in baseline_original_models()
            commands = [baseline_command(args, model)] if has_original else []
            commands += [worker_command(args, model, precision) for precision in args.precisions]
            if args.straightforward:
                commands.append(worker_command(args, model, "fp32", straightforward=True))
            for command in commands:
                records.append(run_json(command))
                print(json.dumps(records[-1]), flush=True)
        print(markdown(records, peak))
    if args.out:
        write_json(args.out, {"peak": peak, "records": records, "argv": sys.argv[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
