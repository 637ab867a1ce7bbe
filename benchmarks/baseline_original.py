"""The original MTReclib's computation, rebuilt as it is structured, to measure its speed here.

Not part of the library: the baseline column of the README's speed table. Written from a reading
of the original (github.com/easezyc/Multitask-Recommendation-Library: models/*.py, main.py,
datasets/aliexpress.py), keeping what decides its speed:

- a ``Dataset`` with a per-sample ``__getitem__`` over NumPy arrays (int64 ids, float32 features
  and labels), read by a ``DataLoader`` with ``num_workers=4`` that collates 2,048 rows a batch;
- every expert, bottom, tower and gate its own module, run one after another in Python loops;
  the embedding offsets turned into a tensor on every call;
- models ending in a sigmoid, trained with one ``BCELoss`` per task, averaged;
- PLE as the original computes it: for each of the ``task_num + 1`` gates of a level, every expert
  the gate mixes is run again on that gate's input (28 expert passes a level with 8 experts and
  2 tasks, where 12 experts exist);
- MetaHeac's inner step differentiates the support loss with respect to *every* parameter
  (``create_graph=True``) and builds a fast copy of each, though only the task embedding's is
  used; two batches make one outer step;
- evaluation under ``no_grad`` turning every batch's labels, predictions and per-row losses into
  Python lists, then ``roc_auc_score`` per task.

Run on the built-in dataset (``mtreclib``'s generator provides the arrays)::

    flock /work/cpu.lock python benchmarks/baseline_original.py --model mmoe --steps 20

prints one JSON line per model: training and evaluation samples/s, end to end (data loading
included), the FLOPs of one training and one evaluation sample, and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

MODELS = ("singletask", "sharedbottom", "omoe", "mmoe", "ple", "aitm", "metaheac")


class RowDataset(Dataset):
    """Rows of NumPy arrays handed out one at a time, as the original's ``AliExpressDataset``."""

    def __init__(self, categorical: np.ndarray, numerical: np.ndarray, labels: np.ndarray):
        self.categorical = categorical.astype(np.int64)
        self.numerical = numerical.astype(np.float32)
        self.labels = labels.astype(np.float32)
        self.field_dims = self.categorical.max(axis=0) + 1
        self.numerical_num = self.numerical.shape[1]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.categorical[i], self.numerical[i], self.labels[i]


class Embedding(nn.Module):
    """One table for all fields; the per-field offsets live in NumPy and become a tensor per call."""

    def __init__(self, field_dims: Sequence[int], dim: int):
        super().__init__()
        self.table = nn.Embedding(int(sum(field_dims)), dim)
        nn.init.xavier_uniform_(self.table.weight)
        self.offsets = np.concatenate([[0], np.cumsum(field_dims)[:-1]]).astype(np.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x + x.new_tensor(self.offsets).unsqueeze(0))


def perceptron(input_dim: int, dims: Sequence[int], dropout: float, output_layer: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for dim in dims:
        layers += [nn.Linear(input_dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(dropout)]
        input_dim = dim
    if output_layer:
        layers.append(nn.Linear(input_dim, 1))
    return nn.Sequential(*layers)


def softmax_gate(input_dim: int, n: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(input_dim, n), nn.Softmax(dim=1))


class Inputs(nn.Module):
    """Embedded fields and the numerical layer, concatenated: (B, (F + 1) * D)."""

    def __init__(self, field_dims: Sequence[int], numerical_num: int, dim: int):
        super().__init__()
        self.embedding = Embedding(field_dims, dim)
        self.numerical = nn.Linear(numerical_num, dim)
        self.output_dim = (len(field_dims) + 1) * dim

    def fields(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.embedding(categorical), self.numerical(numerical).unsqueeze(1)], 1)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        return self.fields(categorical, numerical).view(-1, self.output_dim)


class SingleTask(nn.Module):
    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, **_):
        super().__init__()
        self.inputs = nn.ModuleList(Inputs(fd, nn_, dim) for _ in range(tasks))
        out = self.inputs[0].output_dim
        self.bottom = nn.ModuleList(perceptron(out, bottom, dropout, False) for _ in range(tasks))
        self.tower = nn.ModuleList(perceptron(bottom[-1], tower, dropout) for _ in range(tasks))

    def forward(self, c, n):
        return [torch.sigmoid(t(b(i(c, n))).squeeze(1)) for i, b, t in zip(self.inputs, self.bottom, self.tower)]


class SharedBottom(nn.Module):
    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, **_):
        super().__init__()
        self.inputs = Inputs(fd, nn_, dim)
        self.bottom = perceptron(self.inputs.output_dim, bottom, dropout, False)
        self.tower = nn.ModuleList(perceptron(bottom[-1], tower, dropout) for _ in range(tasks))

    def forward(self, c, n):
        fea = self.bottom(self.inputs(c, n))
        return [torch.sigmoid(t(fea).squeeze(1)) for t in self.tower]


class OMoE(nn.Module):
    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, experts, **_):
        super().__init__()
        self.inputs = Inputs(fd, nn_, dim)
        out = self.inputs.output_dim
        self.expert = nn.ModuleList(perceptron(out, bottom, dropout, False) for _ in range(experts))
        self.gate = softmax_gate(out, experts)
        self.tower = nn.ModuleList(perceptron(bottom[-1], tower, dropout) for _ in range(tasks))

    def forward(self, c, n):
        emb = self.inputs(c, n)
        fea = torch.cat([e(emb).unsqueeze(1) for e in self.expert], dim=1)
        fea = torch.bmm(self.gate(emb).unsqueeze(1), fea).squeeze(1)
        return [torch.sigmoid(t(fea).squeeze(1)) for t in self.tower]


class MMoE(nn.Module):
    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, experts, **_):
        super().__init__()
        self.inputs = Inputs(fd, nn_, dim)
        out = self.inputs.output_dim
        self.expert = nn.ModuleList(perceptron(out, bottom, dropout, False) for _ in range(experts))
        self.gate = nn.ModuleList(softmax_gate(out, experts) for _ in range(tasks))
        self.tower = nn.ModuleList(perceptron(bottom[-1], tower, dropout) for _ in range(tasks))

    def forward(self, c, n):
        emb = self.inputs(c, n)
        weights = [g(emb).unsqueeze(1) for g in self.gate]
        fea = torch.cat([e(emb).unsqueeze(1) for e in self.expert], dim=1)
        return [torch.sigmoid(t(torch.bmm(w, fea).squeeze(1)).squeeze(1)) for w, t in zip(weights, self.tower)]


class PLE(nn.Module):
    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, experts, **_):
        super().__init__()
        self.inputs = Inputs(fd, nn_, dim)
        specific = shared = experts // 2
        self.tasks = tasks
        total = specific * tasks + shared
        self.expert = nn.ModuleList()
        self.gate = nn.ModuleList()
        input_dim = self.inputs.output_dim
        for width in bottom:
            self.expert.append(nn.ModuleList(perceptron(input_dim, [width], dropout, False) for _ in range(total)))
            gates = [softmax_gate(input_dim, shared + specific) for _ in range(tasks)] + [softmax_gate(input_dim, total)]
            self.gate.append(nn.ModuleList(gates))
            input_dim = width
        # Gate j mixes task j's own experts and the shared ones; the last gate mixes all.
        self.members = [[*range(j * specific, (j + 1) * specific), *range(tasks * specific, total)] for j in range(tasks)]
        self.members.append(list(range(total)))
        self.tower = nn.ModuleList(perceptron(bottom[-1], tower, dropout) for _ in range(tasks))

    def forward(self, c, n):
        emb = self.inputs(c, n)
        fea = [emb] * (self.tasks + 1)
        for experts, gates in zip(self.expert, self.gate):
            for j in range(self.tasks + 1):
                out = torch.cat([experts[k](fea[j]).unsqueeze(1) for k in self.members[j]], dim=1)
                fea[j] = torch.bmm(gates[j](fea[j]).unsqueeze(1), out).squeeze(1)
        return [torch.sigmoid(t(f).squeeze(1)) for t, f in zip(self.tower, fea)]


class AITM(nn.Module):
    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, **_):
        super().__init__()
        self.inputs = Inputs(fd, nn_, dim)
        hidden = bottom[-1]
        self.hidden = hidden
        self.g = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(tasks - 1))
        self.h1, self.h2, self.h3 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.bottom = nn.ModuleList(perceptron(self.inputs.output_dim, bottom, dropout, False) for _ in range(tasks))
        self.tower = nn.ModuleList(perceptron(hidden, tower, dropout) for _ in range(tasks))

    def forward(self, c, n):
        emb = self.inputs(c, n)
        fea = [b(emb) for b in self.bottom]
        for i in range(1, len(fea)):
            x = torch.cat([self.g[i - 1](fea[i - 1]).unsqueeze(1), fea[i].unsqueeze(1)], dim=1)
            v, k, q = self.h1(x), self.h2(x), self.h3(x)
            fea[i] = torch.sum(torch.softmax(torch.sum(k * q, 2, True) / np.sqrt(self.hidden), dim=1) * v, 1)
        return [torch.sigmoid(t(f).squeeze(1)) for t, f in zip(self.tower, fea)]


class MetaHeac(nn.Module):
    """Hybrid experts and critics (the original's weighted *mean* over critics), meta-trained."""

    local_lr = 2e-4

    def __init__(self, fd, nn_, dim, bottom, tower, tasks, dropout, experts, critics=5, **_):
        super().__init__()
        self.inputs = Inputs(fd, nn_, dim)
        self.task_embedding = nn.Embedding(tasks, dim)
        self.tasks = tasks
        self.expert = nn.ModuleList(perceptron(self.inputs.output_dim, bottom, dropout, False) for _ in range(experts))
        self.critic = nn.ModuleList(perceptron(bottom[-1], tower, dropout) for _ in range(critics))
        self.expert_gate = softmax_gate(2 * dim, experts)
        self.critic_gate = softmax_gate(2 * dim, critics)

    def forward(self, c, n, task_weight: torch.Tensor | None = None):
        fields = self.inputs.fields(c, n)
        batch = fields.size(0)
        weight = self.task_embedding.weight if task_weight is None else task_weight
        gate_inputs = []
        for i in range(self.tasks):
            ids = torch.full((batch, 1), i, dtype=torch.long, device=c.device)
            task_emb = nn.functional.embedding(ids, weight).squeeze(1)
            gate_inputs.append(torch.cat([task_emb, fields.mean(dim=1)], dim=1))
        emb = fields.view(batch, -1)
        fea = torch.cat([e(emb).unsqueeze(1) for e in self.expert], dim=1)
        results = []
        for g in gate_inputs:
            task_fea = torch.bmm(self.expert_gate(g).unsqueeze(1), fea).squeeze(1)
            out = torch.cat([torch.sigmoid(critic(task_fea)) for critic in self.critic], dim=1)
            results.append(torch.mean(self.critic_gate(g) * out, dim=1))
        return results


BUILDERS = {"singletask": SingleTask, "sharedbottom": SharedBottom, "omoe": OMoE, "mmoe": MMoE, "ple": PLE, "aitm": AITM, "metaheac": MetaHeac}


def task_loss(criterion: nn.Module, predictions: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    loss = 0
    for i, p in enumerate(predictions):
        loss = loss + criterion(p, labels[:, i])
    return loss / len(predictions)


def meta_loss(model: MetaHeac, criterion: nn.Module, batches: list) -> torch.Tensor:
    """The original's global update: an inner step on each batch's support half, query losses averaged."""
    losses = []
    for c, n, y in batches:
        half = c.size(0) // 2
        parameters = list(model.parameters())
        support = task_loss(criterion, model(c[:half], n[:half]), y[:half])
        grads = torch.autograd.grad(support, parameters, create_graph=True, allow_unused=True)
        fast = {id(p): p - model.local_lr * g for p, g in zip(parameters, grads) if g is not None}
        losses.append(task_loss(criterion, model(c[half:], n[half:], fast[id(model.task_embedding.weight)]), y[half:]))
    return torch.stack(losses).mean(0)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batches, steps: int, meta: bool) -> int:
    """``steps`` optimizer steps from the loader's iterator, as the original's train/metatrain; rows used."""
    criterion = nn.BCELoss()
    rows = 0
    for _ in range(steps):
        group = [next(batches) for _ in range(2 if meta else 1)]
        rows += sum(c.size(0) for c, _, _ in group)
        if meta:
            loss = meta_loss(model, criterion, group)
        else:
            c, n, y = group[0]
            loss = task_loss(criterion, model(c, n), y)
        model.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
    return rows


def evaluate(model: nn.Module, loader: DataLoader, tasks: int) -> tuple[list[float], list[float]]:
    """The original's test(): Python lists per batch, then AUC and mean log-loss per task."""
    model.eval()
    labels, predictions, losses = ([[] for _ in range(tasks)] for _ in range(3))
    with torch.no_grad():
        for c, n, y in loader:
            out = model(c, n)
            for i in range(tasks):
                labels[i].extend(y[:, i].tolist())
                predictions[i].extend(out[i].tolist())
                losses[i].extend(nn.functional.binary_cross_entropy(out[i], y[:, i], reduction="none").tolist())
    aucs = [roc_auc_score(labels[i], predictions[i]) for i in range(tasks)]
    return aucs, [float(np.array(losses[i]).mean()) for i in range(tasks)]


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def measure(name: str, args: argparse.Namespace) -> dict:
    from mtreclib.data.datasets import load_dataset  # the same built-in data as mtreclib's benchmark

    dataset = load_dataset(args.dataset, args.data_dir)
    train, test = dataset.train, dataset.test
    tasks = 2
    train_set = RowDataset(train.categorical, train.numerical, train.labels[:, :tasks])
    test_rows = min(len(test), args.eval_rows)
    test_set = RowDataset(test.categorical[:test_rows], test.numerical[:test_rows], test.labels[:test_rows, :tasks])
    torch.manual_seed(0)
    model = BUILDERS[name](
        dataset.schema.field_dims, train_set.numerical_num, args.embed_dim, (512, 256), (128, 64), tasks, 0.2, experts=8
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    meta = name == "metaheac"
    loader = DataLoader(train_set, batch_size=args.batch_size, num_workers=args.workers, shuffle=True)
    batches = iter(loader)
    model.train()
    train_steps(model, optimizer, batches, args.warmup, meta)
    start = time.perf_counter()
    rows = train_steps(model, optimizer, batches, args.steps, meta)
    train_seconds = time.perf_counter() - start
    del batches

    # FLOPs of the same computation, on one batch (dropout and all).
    c, n, y = next(iter(DataLoader(train_set, batch_size=args.batch_size, shuffle=True)))
    group = [(c, n, y)] * (2 if meta else 1)
    criterion = nn.BCELoss()
    train_flops = count_flops(
        lambda: (meta_loss(model, criterion, group) if meta else task_loss(criterion, model(c, n), y)).backward()
    ) / (len(group) * c.size(0))
    model.eval()
    with torch.no_grad():
        eval_flops = count_flops(lambda: model(c, n)) / c.size(0)

    test_loader = DataLoader(test_set, batch_size=args.batch_size, num_workers=args.workers, shuffle=False)
    small = DataLoader(torch.utils.data.Subset(test_set, range(min(2 * args.batch_size, test_rows))), batch_size=args.batch_size)
    evaluate(model, small, tasks)  # warm-up
    start = time.perf_counter()
    evaluate(model, test_loader, tasks)
    eval_seconds = time.perf_counter() - start
    return {
        "model": name,
        "implementation": "original",
        "precision": "fp32",
        "train_samples_per_sec": rows / train_seconds,
        "eval_samples_per_sec": test_rows / eval_seconds,
        "train_flops_per_sample": train_flops,
        "eval_flops_per_sample": eval_flops,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": args.steps,
        "eval_rows": test_rows,
        "threads": torch.get_num_threads(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers (the original's 4)")
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps before timing")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--eval-rows", type=int, default=40_960, help="test rows evaluated (timed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model != "all":
        print(json.dumps(measure(args.model, args)), flush=True)
        return 0
    # One process per model, so that each one's peak memory is its own.
    options = [f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items() if key != "model"]
    for name in MODELS:
        subprocess.run([sys.executable, __file__, f"--model={name}", *options], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
