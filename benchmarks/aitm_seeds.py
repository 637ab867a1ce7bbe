"""AITM's conversion task over many seeds: which difference from the original decides a collapse.

Not part of the library. The issue: on AliExpress-shaped data, ``aitm``'s conversion task
collapsed in 1 of 8 seeds while the original MTReclib's AITM did not. The forward pass and the
gradients are the original's given the same weights, so what can differ is training. This
harness trains AITM once per (variant, seed) through one small loop in which each difference
from the original is a switch, so that a variant changes exactly one thing:

- ``model``: ``ours`` (``mtreclib``'s ``aitm``: banked bottoms and towers, logits out) or
  ``original`` (``baseline_original.AITM``: separate modules, a sigmoid at the end);
- ``init``: ``original`` builds the original's modules under the seed and copies their weights
  into ours (the original's initialisation order);
- ``loss``: ``logits`` (BCE with logits, ours) or ``sigmoid`` (sigmoid then ``BCELoss``, the
  original's; the original model always takes this one);
- ``dropout``: ``numpy`` (our masks, NumPy's PCG64 seeded from torch) or ``torch`` (``F.dropout``);
- ``valid``: ``tail`` (the last 10% of the training rows held out, as ``mtrec train``) or
  ``none`` (train on every row, as the original);
- ``drop_last``: drop the short last batch of an epoch (ours) or keep it (the original);
- ``order``: ``loader`` (our ``BatchLoader``'s permutation, seeded by the run's seed and epoch)
  or ``global`` (the original's ``DataLoader``: a ``RandomSampler`` seeded from the global
  generator, which also moves the dropout stream).

With the trainer's defaults both epochs always run (patience 2), so the selection of the epoch
does not change training: every run records the validation and test AUCs of every epoch, and
the report shows the test AUC of the epoch chosen on validation (``mtrec``) and of the epoch
chosen on test (the original's ``EarlyStopper``). The loop with the ``ours`` variant computes what
``mtreclib.training.trainer.Trainer`` computes (``--check-trainer`` shows it on a few steps).

Data: ``mtreclib``'s synthetic generator, 200k training rows, 50k test rows, click rate 0.2,
click-and-convert rate 0.017, data seed 0 (fixed once, never tuned on). The original's settings:
embed 128, bottoms (512, 256), towers (128, 64), dropout 0.2, Adam lr 1e-3, weight decay 1e-6,
batch 2048, 2 epochs. One thread per run; runs go one after another.

    python benchmarks/aitm_seeds.py run --variants ours original --seeds 0-23 --out aitm.jsonl
    python benchmarks/aitm_seeds.py report aitm.jsonl
    python benchmarks/aitm_seeds.py check-trainer

``run`` appends one JSON line per (variant, seed) and skips those already in ``--out``, so an
interrupted sweep continues where it stopped. ``report`` prints the per-seed table and the
collapse counts (test conversion AUC below ``--collapse``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baseline_original  # noqa: E402

from mtreclib.data.datasets import generated_dataset  # noqa: E402
from mtreclib.data.synthetic import SyntheticConfig  # noqa: E402
from mtreclib.data.table import split_validation  # noqa: E402
from mtreclib.models.registry import create_model  # noqa: E402
from mtreclib.nn import layers  # noqa: E402
from mtreclib.nn.dropout import relu_dropout  # noqa: E402

DATA = SyntheticConfig(train_rows=200_000, test_rows=50_000, ctr=0.2, ctcvr=0.017, seed=0)
BATCH, EPOCHS, LR, WEIGHT_DECAY, VALID_FRACTION = 2048, 2, 1e-3, 1e-6, 0.1
EMBED, BOTTOM, TOWER, DROPOUT = 128, (512, 256), (128, 64), 0.2


@dataclass(frozen=True)
class Variant:
    model: str = "ours"  # ours | original
    init: str = "ours"  # ours | original
    loss: str = "logits"  # logits | sigmoid
    dropout: str = "numpy"  # numpy | torch
    valid: str = "tail"  # tail | none
    drop_last: bool = True
    order: str = "loader"  # loader | global


OURS = Variant()
ORIGINAL = Variant(model="original", loss="sigmoid", dropout="torch", valid="none", drop_last=False, order="global")
VARIANTS: dict[str, Variant] = {
    "ours": OURS,
    "original": ORIGINAL,
    # One difference at a time from ours.
    "ours+original_init": replace(OURS, init="original"),
    "ours+sigmoid_bce": replace(OURS, loss="sigmoid"),
    "ours+torch_dropout": replace(OURS, dropout="torch"),
    "ours+keep_last": replace(OURS, drop_last=False),
    "ours+global_order": replace(OURS, order="global"),
    "ours+no_valid": replace(OURS, valid="none"),
    # Everything of the original's training around our model, and the original model in ours.
    "ours_model+original_training": replace(ORIGINAL, model="ours", loss="logits", dropout="numpy"),
    "original_model+our_training": replace(OURS, model="original", loss="sigmoid", dropout="torch"),
}


def load_data():
    return generated_dataset("synthetic_aitm", DATA, "data", progress=False)  # written to data/synthetic_aitm/ once


def build(variant: Variant, schema) -> nn.Module:
    """The model under the already seeded global generator."""
    if variant.model == "original":
        return baseline_original.AITM(schema.field_dims, schema.numerical_num, EMBED, BOTTOM, TOWER, schema.task_num, DROPOUT)
    if variant.init == "original":
        source = baseline_original.AITM(schema.field_dims, schema.numerical_num, EMBED, BOTTOM, TOWER, schema.task_num, DROPOUT)
        model = create_model("aitm", schema)
        copy_original_weights(source, model)
        return model
    return create_model("aitm", schema)


@torch.no_grad()
def copy_original_weights(source: baseline_original.AITM, target: nn.Module) -> None:
    """Give our ``aitm`` the weights (and BatchNorm statistics) of the original's modules."""
    embedding = target.embedding
    embedding.embedding.weight.copy_(source.inputs.embedding.table.weight)
    embedding.numerical.load_state_dict(source.inputs.numerical.state_dict())
    for bank, modules in ((target.bottoms, source.bottom), (target.towers, source.tower)):
        for t, mlp in enumerate(modules):
            linears = [m for m in mlp if isinstance(m, nn.Linear)]
            norms = [m for m in mlp if isinstance(m, nn.BatchNorm1d)]
            for layer, linear in enumerate(linears):
                bank.weights[layer][t].copy_(linear.weight.t())
                bank.biases[layer][t].copy_(linear.bias)
            for layer, norm in enumerate(norms):
                width = norm.num_features
                channels = slice(t * width, (t + 1) * width)
                bank.norms[layer].weight[channels] = norm.weight
                bank.norms[layer].bias[channels] = norm.bias
                bank.norms[layer].running_mean[channels] = norm.running_mean
                bank.norms[layer].running_var[channels] = norm.running_var
    for ours, theirs in zip(target.transfer, source.g):
        ours.load_state_dict(theirs.state_dict())
    for ours, theirs in ((target.value, source.h1), (target.key, source.h2), (target.query, source.h3)):
        ours.load_state_dict(theirs.state_dict())


def probabilities(model: nn.Module, variant: Variant, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
    """(B, T) predicted probabilities."""
    if variant.model == "original":
        return torch.stack(model(categorical, numerical), dim=1)
    return torch.sigmoid(model(categorical, numerical))


def loss_of(model: nn.Module, variant: Variant, categorical, numerical, labels) -> torch.Tensor:
    """Mean over tasks of each task's mean BCE (ours: ``ew``'s ``sum_t L_t / T``)."""
    if variant.model == "original":
        return baseline_original.task_loss(nn.BCELoss(), model(categorical, numerical), labels)
    logits = model(categorical, numerical)  # (B, T)
    if variant.loss == "sigmoid":
        probs = torch.sigmoid(logits)
        return baseline_original.task_loss(nn.BCELoss(), list(probs.unbind(1)), labels)
    tasks = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0)  # (T,)
    return (tasks.new_full(tasks.shape, 1.0 / len(tasks)) * tasks).sum()


class Split:
    """A table's rows as tensors, cut into batches."""

    def __init__(self, table):
        self.categorical = torch.from_numpy(np.ascontiguousarray(table.categorical)).long()
        self.numerical = torch.from_numpy(np.ascontiguousarray(table.numerical)).float()
        self.labels = torch.from_numpy(np.ascontiguousarray(table.labels)).float()

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, order: torch.Tensor | None, drop_last: bool):
        n = len(self)
        full, rest = divmod(n, BATCH)
        count = full if drop_last and full else full + (rest > 0)
        for b in range(count):
            rows = slice(b * BATCH, min((b + 1) * BATCH, n))
            if order is None:
                yield self.categorical[rows], self.numerical[rows], self.labels[rows]
            else:
                index = order[rows]
                yield self.categorical[index], self.numerical[index], self.labels[index]


def epoch_order(variant: Variant, n: int, seed: int, epoch: int) -> torch.Tensor:
    if variant.order == "global":
        # torch.utils.data.RandomSampler: a seed from the global generator, then a permutation.
        generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
    else:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)  # BatchLoader's
    return torch.randperm(n, generator=generator)


@torch.no_grad()
def aucs(model: nn.Module, variant: Variant, split: Split) -> list[float]:
    model.eval()
    predicted = torch.cat([probabilities(model, variant, c, n) for c, n, _ in split.batches(None, False)])
    model.train()
    labels = split.labels.numpy()
    return [float(roc_auc_score(labels[:, t], predicted[:, t].double().numpy())) for t in range(labels.shape[1])]


def adam(model: nn.Module, variant: Variant) -> torch.optim.Optimizer:
    if variant.model == "original":
        return torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    return torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True)  # as mtreclib.training.trainer


def train_one(variant: Variant, seed: int, dataset, max_steps: int | None = None) -> dict:
    """Train one model; per-epoch validation and test AUCs (the validation ones None without a split)."""
    layers.relu_dropout = relu_dropout if variant.dropout == "numpy" else _torch_relu_dropout
    if variant.valid == "tail":
        train_table, valid_table = split_validation(dataset.train, VALID_FRACTION)
        valid = Split(valid_table)
    else:
        train_table, valid = dataset.train, None
    train, test = Split(train_table), Split(dataset.test)
    torch.manual_seed(seed)
    model = build(variant, dataset.schema)
    optimizer = adam(model, variant)
    model.train()
    history, steps, start = [], 0, time.perf_counter()
    for epoch in range(EPOCHS):
        order = epoch_order(variant, len(train), seed, epoch)
        for categorical, numerical, labels in train.batches(order, variant.drop_last):
            loss = loss_of(model, variant, categorical, numerical, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return {"loss": float(loss.detach()), "model": model}
        history.append({"epoch": epoch + 1, "valid": aucs(model, variant, valid) if valid else None, "test": aucs(model, variant, test)})
    return {"history": history, "seconds": time.perf_counter() - start}


def _torch_relu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(F.relu(x), p, training)


def chosen(history: list[dict], on: str) -> dict:
    """The epoch a run keeps: best mean AUC on ``on`` (the first of equals, as both stoppers)."""
    best = None
    for record in history:
        if record[on] is None:
            return {}
        if best is None or np.mean(record[on]) > np.mean(best[on]):
            best = record
    return best


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def command_run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(r["variant"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    dataset = load_data()
    for seed in parse_seeds(args.seeds):
        for name in args.variants:
            if (name, seed) in done:
                continue
            result = train_one(VARIANTS[name], seed, dataset)
            row = {"variant": name, "seed": seed, **result, "config": asdict(VARIANTS[name])}
            with out.open("a") as file:
                file.write(json.dumps(row) + "\n")
            valid, test = chosen(result["history"], "valid"), chosen(result["history"], "test")
            print(
                f"{name:<30} seed {seed:>3}  conversion test AUC: valid-chosen {valid.get('test', [0, float('nan')])[1]:.4f}"
                f"  test-chosen {test['test'][1]:.4f}  ({result['seconds']:.0f} s)",
                flush=True,
            )


def command_report(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for path in args.files for line in Path(path).read_text().splitlines()]
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], {})[row["seed"]] = row
    task = args.task
    for name, runs in by_variant.items():
        print(f"\n{name}: {len(runs)} seeds; test AUC of task {task} (epoch chosen on validation / on test); per-epoch test AUCs")
        low = {"valid": 0, "test": 0}
        for seed in sorted(runs):
            history = runs[seed]["history"]
            picks = {on: chosen(history, on) for on in ("valid", "test")}
            values = {on: (p["test"][task] if p else float("nan")) for on, p in picks.items()}
            for on, value in values.items():
                low[on] += value < args.collapse
            epochs = " ".join(f"{r['test'][task]:.4f}" for r in history)
            valid_epochs = " ".join(f"{r['valid'][task]:.4f}" for r in history if r["valid"] is not None)
            flag = "  <- collapsed" if min(v for v in values.values() if v == v) < args.collapse else ""
            print(f"  seed {seed:>3}: {values['valid']:.4f} / {values['test']:.4f}   epochs test [{epochs}] valid [{valid_epochs}]{flag}")
        print(f"  below {args.collapse}: {low['valid']} (valid-chosen), {low['test']} (test-chosen) of {len(runs)}")
    summary(by_variant, task, args.reference)


def final_auc(run: dict, task: int) -> float:
    """Test AUC of the kept epoch: chosen on validation where the run has it, else on test (the original)."""
    history = run["history"]
    return chosen(history, "valid" if history[0]["valid"] is not None else "test")["test"][task]


def summary(by_variant: dict[str, dict[int, dict]], task: int, reference: str) -> None:
    """One line per variant: medians and spreads of the kept epoch's and of the first epoch's test
    AUC, and a two-sided Mann-Whitney test of each against ``reference`` (runs of one seed in two
    variants share no random stream that matters, so the samples are unpaired)."""
    from scipy.stats import mannwhitneyu

    print(f"\nsummary, task {task}: test AUC of the kept epoch, and after epoch 1; p: Mann-Whitney against {reference}")
    base = by_variant.get(reference, {})
    for name, runs in by_variant.items():
        final = np.array([final_auc(r, task) for r in runs.values()])
        first = np.array([r["history"][0]["test"][task] for r in runs.values()])
        line = (
            f"  {name:<30} n={len(runs):>3}  kept: median {np.median(final):.4f} mean {final.mean():.4f} "
            f"min {final.min():.4f}  epoch 1: median {np.median(first):.4f} min {first.min():.4f}"
        )
        if base and name != reference:
            p_final = mannwhitneyu(final, [final_auc(r, task) for r in base.values()]).pvalue
            p_first = mannwhitneyu(first, [r["history"][0]["test"][task] for r in base.values()]).pvalue
            line += f"  p(kept) {p_final:.3f} p(epoch 1) {p_first:.3f}"
        print(line)


def command_check_trainer(args: argparse.Namespace) -> None:
    """The loop's ``ours`` variant against ``mtreclib.training.trainer.Trainer``, ``args.steps`` steps, same seed."""
    from mtreclib.config.experiment import TrainConfig
    from mtreclib.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    dataset = load_data()
    mine = train_one(OURS, args.seed, dataset, max_steps=args.steps)["model"]
    train, valid = split_validation(dataset.train, VALID_FRACTION)
    torch.manual_seed(args.seed)
    model = create_model("aitm", dataset.schema)
    config = TrainConfig(epochs=1, seed=args.seed, max_steps=args.steps, patience=0, threads=args.threads)
    Trainer(model, config, torch.device("cpu"), progress=False).fit(train, valid.select(slice(0, 0)))
    theirs = dict(model.state_dict())
    worst = max(float((p - theirs[k]).abs().max()) for k, p in mine.state_dict().items() if p.is_floating_point())
    print(f"after {args.steps} steps, largest difference between the loop's and the Trainer's weights: {worst:.3g}")
    # The weight copy of the ``init=original`` variant: the same weights give the same predictions.
    torch.manual_seed(args.seed)
    source = build(ORIGINAL, dataset.schema).eval()
    torch.manual_seed(args.seed)
    copied = build(replace(OURS, init="original"), dataset.schema).eval()
    test = Split(dataset.test)
    c, n, _ = next(test.batches(None, False))
    with torch.no_grad():
        gap = (probabilities(source, ORIGINAL, c, n) - probabilities(copied, OURS, c, n)).abs().max()
    print(f"original modules and ours with their weights copied: largest difference of probabilities {float(gap):.3g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the variants over the seeds, one JSON line each")
    run.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["ours", "original"])
    run.add_argument("--seeds", default="0-7", help="e.g. 0-23 or 0,3,5-9")
    run.add_argument("--out", required=True, help="JSON lines file, appended to")
    run.add_argument("--threads", type=int, default=1)
    report = sub.add_parser("report", help="per-seed table and collapse counts")
    report.add_argument("files", nargs="+")
    report.add_argument("--task", type=int, default=1, help="task column (1: conversion)")
    report.add_argument("--collapse", type=float, default=0.9, help="a test AUC below this counts as collapsed")
    report.add_argument("--reference", default="ours", help="the variant the others are tested against")
    check = sub.add_parser("check-trainer", help="the loop's ours variant equals mtreclib's Trainer")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--steps", type=int, default=5)
    check.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    {"run": command_run, "report": command_report, "check-trainer": command_check_trainer}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
