"""The training loop. Nothing here knows which model it trains.

A model maps a batch to per-task logits and owns its training loss (``MultiTaskModel``); the
trainer cuts batches, steps the optimizer, evaluates on the validation split after every epoch,
stops early on its mean AUC and keeps the best weights. It holds no global state, and takes a
rank and world size so that one process per device can run it.

With several processes (``world_size > 1``, a process group already initialised, see
``mtreclib.distributed``) each rank trains on its share of every global batch through
DistributedDataParallel; validation and test predictions are gathered to rank 0, which computes
the metrics once and broadcasts them, so every rank takes the same early-stopping decisions and
the metrics are those of the whole split. Only rank 0 shows progress and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mtreclib import distributed
from mtreclib.atomic import atomic_output
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable
from mtreclib.errors import UserError
from mtreclib.metrics import logit_metrics, mean_auc
from mtreclib.schema import Batch


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the original MTReclib's.

    Attributes:
        epochs: most epochs to train.
        batch_size: rows per optimizer step (per batch for MetaHeac, which takes two a step).
        lr, weight_decay: Adam's.
        patience: stop after this many epochs without a better validation mean AUC; 0 trains
            every epoch and keeps the last weights.
        max_steps: stop after this many optimizer steps (quick checks, benchmarks).
        seed: seeds the shuffling (the caller seeds the model's initialisation).
        progress: show progress bars.
        checkpoint: where the best weights are written (to a temporary name, then renamed).
        precision: ``"fp32"``, or ``"bf16"``: forward passes under bfloat16 autocast (matrix
            products in bf16, weights, optimizer and loss in float32). Pays only where the
            hardware multiplies bf16 natively (recent GPUs, CPUs with AVX-512 BF16 or AMX).
        compile: run the model through ``torch.compile`` (needs a C++ compiler on CPU, takes a
            while on the first steps).
    """

    epochs: int = 50
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 1e-6
    patience: int = 2
    max_steps: int | None = None
    seed: int = 0
    progress: bool = True
    checkpoint: Path | None = None
    precision: str = "fp32"
    compile: bool = False


@dataclass
class FitResult:
    """What training did: per-epoch validation history and throughput."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    steps: int = 0
    train_samples: int = 0
    train_seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds > 0 else math.nan


class TrainingObjective(nn.Module):
    """The model's training loss as a module's forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batches: Sequence[Batch]) -> torch.Tensor:
        return self.model.training_loss(batches)


def validation_score(metrics: dict[str, dict[str, float]]) -> float:
    """Early-stopping score: mean AUC, or minus the mean log-loss where no task has an AUC."""
    score = mean_auc(metrics)
    return score if not math.isnan(score) else -float(np.mean([m["logloss"] for m in metrics.values()]))


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    with atomic_output(path) as temporary:
        torch.save(state, temporary)


PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context that runs forward passes at ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def adam(parameters: Iterator[nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam as the original configures it, fused into one kernel per step where PyTorch can."""
    kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
    parameters = list(parameters)
    try:
        # Fused Adam: CUDA since PyTorch 2.0, CPU since 2.4; the same update, in fewer passes.
        return torch.optim.Adam(parameters, **kwargs, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, **kwargs, foreach=device.type == "cuda")


def _groups(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    """Consecutive batches in groups of ``size``; the last group may be shorter."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class Trainer:
    """Trains one model with Adam and early stopping on a validation split.

    Args:
        model: a ``MultiTaskModel`` (``forward`` -> (B, T) logits, ``training_loss``,
            ``batches_per_step``), already on ``device``.
        config: optimisation settings.
        device: where batches go.
        rank, world_size: this process among the training processes.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device, *, rank: int = 0, world_size: int = 1):
        self.model = model
        self.config = config
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.objective: nn.Module = TrainingObjective(model)
        self.optimizer = adam(model.parameters(), config, device)
        if config.compile:
            # In place, so that the model's own training_loss calls the compiled forward.
            model.compile()
        if world_size > 1:
            self.objective = distributed.wrap(self.objective, device)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.model.schema.task_names

    def _loader(self, table: MultiTaskTable, *, train: bool) -> BatchLoader:
        return BatchLoader(
            table,
            self.config.batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.config.seed,
            task_num=len(self.task_names),
            device=self.device,
            rank=self.rank if train else 0,
            world_size=self.world_size if train else 1,
        )

    def fit(self, train: MultiTaskTable, valid: MultiTaskTable) -> FitResult:
        """Train, evaluate on ``valid`` after every epoch, and end with the best weights loaded."""
        config = self.config
        if config.patience > 0 and len(valid) == 0:
            raise UserError("early stopping needs a validation split: set a validation fraction above 0, or patience 0")
        loader = self._loader(train, train=True)
        steps_per_epoch = math.ceil(len(loader) / self.model.batches_per_step)
        result = FitResult()
        best_score, best_state, waited = -math.inf, None, 0
        for epoch in range(config.epochs):
            loader.set_epoch(epoch)
            train_loss, seconds, samples = self._train_epoch(loader, epoch, steps_per_epoch, result)
            result.train_seconds += seconds
            result.train_samples += samples
            result.epochs_run = epoch + 1
            record = {"epoch": epoch + 1, "steps": result.steps, "train_loss": train_loss, "train_seconds": seconds}
            if len(valid):
                # Computed on rank 0 and broadcast: every rank sees the same score and so takes
                # the same early-stopping decision below, and all stop together.
                metrics = self.evaluate(valid)
                record["valid"] = metrics
                record["valid_score"] = validation_score(metrics)
            result.history.append(record)
            self._log_epoch(record)
            if config.patience == 0:
                result.best_epoch = epoch + 1
            elif record["valid_score"] > best_score:
                best_score, waited, result.best_epoch = record["valid_score"], 0, epoch + 1
                best_state = copy.deepcopy(self.model.state_dict())
                if config.checkpoint is not None and self.rank == 0:
                    save_checkpoint(config.checkpoint, {"state_dict": best_state, "epoch": epoch + 1, "valid": metrics})
            else:
                waited += 1
                if waited >= config.patience:
                    break
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        elif config.checkpoint is not None and self.rank == 0:
            save_checkpoint(config.checkpoint, {"state_dict": self.model.state_dict(), "epoch": result.epochs_run})
        return result

    def _train_epoch(self, loader: BatchLoader, epoch: int, steps_per_epoch: int, result: FitResult) -> tuple[float, float, int]:
        """One pass over ``loader``: (mean loss over all ranks, seconds, samples seen on all ranks)."""
        config = self.config
        self.model.train()
        total_loss, steps, samples = 0.0, 0, 0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}",
            disable=not config.progress or self.rank != 0,
            mininterval=1.0,
            leave=False,
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        for group in _groups(iter(loader), self.model.batches_per_step):
            with autocast(self.device, config.precision):
                loss = self.objective(group)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item()
            steps += 1
            samples += sum(b.size for b in group)
            result.steps += 1
            bar.update()
            bar.set_postfix(loss=f"{total_loss / steps:.4f}", refresh=False)
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
        seconds = time.perf_counter() - start
        bar.close()
        # One collective per epoch: every rank makes the same number of steps.
        totals = torch.tensor([total_loss, samples], dtype=torch.float64, device=self.device)
        total_loss, samples = distributed.sum_over_ranks(totals).tolist()
        return (total_loss / (steps * self.world_size) if steps else math.nan), seconds, int(samples)

    @torch.inference_mode()
    def predict(self, table: MultiTaskTable) -> torch.Tensor:
        """(N, T) float32 logits of every row of ``table``, in order, on the CPU."""
        self.model.eval()
        logits = torch.empty(len(table), len(self.task_names))
        start = 0
        for batch in self._loader(table, train=False):
            with autocast(self.device, self.config.precision):
                out = self.model(batch.categorical, batch.numerical)
            logits[start : start + batch.size] = out.float().cpu()
            start += batch.size
        return logits

    def evaluate(self, table: MultiTaskTable) -> dict[str, dict[str, float]]:
        """``{task: {"auc", "logloss"}}`` of the model on the whole of ``table``, on every rank.

        With several processes each rank predicts a contiguous run of whole batches, rank 0
        gathers the logits and computes the metrics, and broadcasts them.
        """
        labels = table.rows(table.labels)[:, : len(self.task_names)]
        if self.world_size == 1:
            return logit_metrics(self.predict(table), labels, self.task_names)
        distributed.broadcast_buffers(self.model)  # evaluate rank 0's model on every shard
        batch_num = math.ceil(len(table) / self.config.batch_size)
        first, last = distributed.shard_range(batch_num, self.rank, self.world_size)
        shard = table.select(slice(first * self.config.batch_size, min(last * self.config.batch_size, len(table))))
        logits = distributed.gather_rows(self.predict(shard).to(self.device))
        metrics = logit_metrics(logits.cpu(), labels, self.task_names) if self.rank == 0 else None
        return distributed.broadcast_object(metrics)

    def _log_epoch(self, record: dict) -> None:
        if not self.config.progress or self.rank != 0:
            return
        parts = [f"epoch {record['epoch']}", f"loss {record['train_loss']:.5f}"]
        for task, m in record.get("valid", {}).items():
            parts.append(f"valid {task} AUC {m['auc']:.4f} log-loss {m['logloss']:.5f}")
        tqdm.write(" | ".join(parts))
