"""What each model costs next to MMoE: parameters, FLOPs per sample, and (optionally) speed.

At the library's comparison configuration (embed 128, batch 2048, 8 experts) on a batch of the
built-in dataset. FLOPs are counted by ``FlopCounterMode`` (matrix products; lookups and
elementwise work are not counted): "straightforward" multiplies the concatenated embeddings
densely, "executed" is what the library runs (split products where a model can use them).
``--time`` adds training samples/s over ``--steps`` steps, models interleaved round by round so
that a shared machine's load falls on all of them alike; the median round is reported.

    python benchmarks/model_cost.py --models mmoe stem adatt pepnet home [--time]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import model_flops  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from mtreclib.data import synthetic
    from mtreclib.data.datasets import generated_dataset
    from mtreclib.data.loader import BatchLoader
    from mtreclib.models import create_model, model_kwargs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mmoe", "stem", "adatt", "pepnet", "home"])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--expert-num", type=int, default=8)
    parser.add_argument("--time", action="store_true", help="also time training steps")
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (one step of every model per round)")
    args = parser.parse_args(argv)

    config = replace(synthetic.PRESETS["synthetic"], train_rows=4 * args.batch_size, test_rows=1000)
    dataset = generated_dataset("synthetic_model_cost", config, "data", progress=False)
    batch = next(iter(BatchLoader(dataset.train, args.batch_size, shuffle=False)))
    settings = {"embed_dim": args.embed_dim, "expert_num": args.expert_num}
    models, rows = {}, {}
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, dataset.schema, **model_kwargs(name, settings))
        embedding = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("embedding.", "embeddings.")))
        train, evaluation = model_flops(model, batch, split=False)
        executed_train, executed_eval = model_flops(model, batch, split=True)
        models[name] = model
        rows[name] = {
            "model": name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "embedding_parameters": embedding,
            "train_flops_per_sample": train,
            "eval_flops_per_sample": evaluation,
            "executed_train_flops_per_sample": executed_train,
            "executed_eval_flops_per_sample": executed_eval,
        }
    if args.time:
        optimizers = {name: torch.optim.Adam(m.parameters()) for name, m in models.items()}
        seconds: dict[str, list[float]] = {name: [] for name in models}
        for round_ in range(args.steps + 1):  # round 0 warms up
            for name, model in models.items():
                model.train()
                start = time.perf_counter()
                loss = model.training_loss([batch] * model.batches_per_step)
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
                if round_:
                    seconds[name].append(time.perf_counter() - start)
        for name in models:
            rows[name]["train_samples_per_sec"] = args.batch_size / statistics.median(seconds[name])
    reference = rows.get("mmoe")
    for row in rows.values():
        if reference:
            row["eval_flops_vs_mmoe"] = row["eval_flops_per_sample"] / reference["eval_flops_per_sample"]
            row["parameters_vs_mmoe"] = row["parameters"] / reference["parameters"]
            if args.time:
                row["train_speed_vs_mmoe"] = row["train_samples_per_sec"] / reference["train_samples_per_sec"]
        print(json.dumps(row), flush=True)
    header = "| model | parameters | of which embedding | eval MFLOPs/sample | train MFLOPs/sample | executed train MFLOPs/sample |"
    print("\n" + header + (" train samples/s | vs MMoE |" if args.time else ""))
    print("|---|--:|--:|--:|--:|--:|" + ("--:|--:|" if args.time else ""))
    for row in rows.values():
        line = (
            f"| {row['model']} | {row['parameters'] / 1e6:.2f}M | {row['embedding_parameters'] / 1e6:.2f}M "
            f"| {row['eval_flops_per_sample'] / 1e6:.1f} | {row['train_flops_per_sample'] / 1e6:.1f} "
            f"| {row['executed_train_flops_per_sample'] / 1e6:.1f} |"
        )
        if args.time:
            line += f" {row['train_samples_per_sec']:,.0f} | {row.get('train_speed_vs_mmoe', 1):.2f}x |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
