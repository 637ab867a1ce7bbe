"""The training loop. Nothing here knows which model it trains, or how its task losses are combined.

A model maps a batch to per-task logits and gives the per-task losses of a step
(``MultiTaskModel.task_losses``); an optimisation strategy (``mtreclib.mto``) turns those into
gradients; the trainer cuts batches, clips the gradients if asked, steps the optimizer and its
learning-rate schedule (``mtreclib.training.optim``), evaluates on the validation split after
every epoch, stops early on its score (``validation_score``: mean AUC, or GAUC with ``select_metric``) and keeps the best weights. It holds no global state,
and takes a rank and world size so that one process per device can run it.

With several processes (``world_size > 1``, a process group already initialised, see
``mtreclib.core.distributed``) each rank trains on its share of every global batch through
DistributedDataParallel; validation and test predictions are gathered to rank 0, which computes
the metrics once and broadcasts them, so every rank takes the same early-stopping decisions and
the metrics are those of the whole split. Only rank 0 shows progress and writes checkpoints.

``state()`` and ``fit(..., resume=state)`` carry everything a run needs to continue where an
epoch ended (weights, optimizer, learning-rate schedule, strategy, early-stopping counters,
history, random states), so that on CPU a resumed run ends bitwise equal to one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mtreclib.config.experiment import TrainConfig
from mtreclib.core import distributed
from mtreclib.core.allocator import reusing_freed_memory
from mtreclib.core.errors import UserError
from mtreclib.core.metrics import logit_metrics, mean_auc, mean_rmse
from mtreclib.core.progress import Progress, draws_bars, duration, note
from mtreclib.core.schema import Batch
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable
from mtreclib.models.base import MultiTaskModel, RegressionLoss, TaskLosses
from mtreclib.mto import StepContext, Strategy, create_strategy
from mtreclib.nn.layers import sparse_tables
from mtreclib.scoring import autocast, logits
from mtreclib.training.optim import adam, build_optimizer, build_schedule, planned_steps  # noqa: F401 - adam re-exported


@dataclass
class FitResult:
    """What training did: per-epoch history and throughput."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    steps: int = 0
    train_samples: int = 0
    train_seconds: float = 0.0
    best_score: float = -math.inf
    waited: int = 0

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds > 0 else math.nan


class Checkpoints(Protocol):
    """Where the trainer's checkpoints go (``mtreclib.training.experiment`` writes them into the run folder)."""

    def save_best(self, state_dict: dict[str, torch.Tensor], epoch: int, valid: dict | None) -> None: ...

    def save_last(self, state: dict[str, Any]) -> None: ...


class MetricsLog(Protocol):
    """Where per-step and per-epoch figures are logged (TensorBoard)."""

    def step(self, step: int, loss: float, task_losses: Sequence[float]) -> None: ...

    def epoch(self, record: dict) -> None: ...


class TrainingObjective(nn.Module):
    """The model's per-task losses as a module's forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, batches: Sequence[Batch]) -> TaskLosses:
        return self.model.task_losses(batches)


def validation_score(metrics: dict[str, dict[str, float]], select_metric: str = "auc") -> float:
    """Early-stopping and model-selection score, higher is better: the mean AUC of the binary
    tasks (``select_metric="gauc"``: their mean GAUC); minus their mean log-loss where none has
    one; minus the mean RMSE of the regression tasks where there is no binary task."""
    score = mean_auc(metrics, select_metric)
    if not math.isnan(score):
        return score
    loglosses = [m["logloss"] for m in metrics.values() if "logloss" in m]
    return -float(np.mean(loglosses)) if loglosses else -mean_rmse(metrics)


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


def rng_state() -> dict[str, Any]:
    """This process's random states (CPU and CUDA generators of PyTorch)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains one model with its optimizer (Adam at a constant rate by default) and early stopping on a validation split.

    Args:
        model: a ``MultiTaskModel``, already on ``device``.
        config: optimisation settings.
        device: where batches go.
        strategy: how task losses become gradients (default: ``config.mto`` with its defaults).
        rank, world_size: this process among the training processes.
        progress: show progress and per-epoch lines (rank 0 only).
        checkpoints: where best and last states go (None: nowhere).
        log: where per-step and per-epoch figures go (None: nowhere).
        epoch_end: called with each epoch's record (losses, validation metrics, ``valid_score``)
            once the epoch is over (the same record on every rank); one that raises ends
            training with its exception (a tuner stops a trial doing worse than others so).
    """

    def __init__(
        self,
        model: MultiTaskModel,
        config: TrainConfig,
        device: torch.device,
        *,
        strategy: Strategy | None = None,
        rank: int = 0,
        world_size: int = 1,
        progress: bool = True,
        checkpoints: Checkpoints | None = None,
        log: MetricsLog | None = None,
        epoch_end: Sequence[Callable[[dict], None]] = (),
    ):
        self.model = model
        self.config = config
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.progress = progress and rank == 0
        self.checkpoints = checkpoints if rank == 0 else None
        self._saves = checkpoints is not None  # known on every rank: saving needs every rank's random state
        self.log = log if rank == 0 else None
        self.epoch_end = tuple(epoch_end)
        model.regression_loss = RegressionLoss(config.regression_loss, config.huber_delta)
        self.strategy = (strategy or create_strategy(config.mto, model.task_num)).to(device)
        self.strategy.attach(model)
        self.objective: nn.Module = TrainingObjective(model)
        self.optimizer = build_optimizer([*model.parameters(), *self.strategy.parameters()], config, device)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # built by fit, which knows the steps per epoch
        self.planned_steps = 0  # the run's steps if it never stops early (fit)
        # Clipping bounds the model's gradient; a strategy's own parameters (UW's log-variances,
        # GradNorm's weights) learn from their own losses and are left as they are.
        self.clipped = [p for p in model.parameters() if p.requires_grad]
        if config.compile:
            # In place, so that the model's own task_losses calls the compiled forward.
            model.compile()
        if world_size > 1:
            self.objective = distributed.wrap(self.objective, device)

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.model.schema.task_names

    def _loader(self, table: MultiTaskTable) -> BatchLoader:
        """The training batches: shuffled, this rank's share of each global batch."""
        return BatchLoader(
            table,
            self.config.batch_size,
            shuffle=True,
            drop_last=True,
            seed=self.config.seed,
            device=self.device,
            rank=self.rank,
            world_size=self.world_size,
            sample_weights=self.config.sample_weights,
        )

    def _memory(self) -> contextlib.AbstractContextManager:
        return keeping_memory(self.config, self.device)

    def fit(self, train: MultiTaskTable, valid: MultiTaskTable, *, resume: dict[str, Any] | None = None) -> FitResult:
        """Train, evaluate on ``valid`` after every epoch, and end with the best weights loaded.

        ``resume``: a ``state()`` saved after an epoch (plus ``best_state``, the best weights so
        far); training continues with the next epoch.
        """
        with self._memory():
            return self._fit(train, valid, resume)

    def _fit(self, train: MultiTaskTable, valid: MultiTaskTable, resume: dict[str, Any] | None) -> FitResult:
        config = self.config
        if config.patience > 0 and len(valid) == 0:
            raise UserError("early stopping needs a validation split: set a validation fraction above 0, or patience 0")
        loader = self._loader(train)
        if self.rank == 0:
            warn_dropped(loader)
        steps_per_epoch = math.ceil(len(loader) / self.model.batches_per_step)
        result, best_state = FitResult(), None
        self.scheduler = build_schedule(self.optimizer, config, steps_per_epoch)
        self.planned_steps = planned_steps(config, steps_per_epoch)
        if resume is not None:
            result, best_state = self._restore(resume)
            if config.patience == 0:
                best_state = None  # the last weights are kept
        started, first_epoch = time.perf_counter(), result.epochs_run
        for epoch in range(result.epochs_run, config.epochs):
            if result.waited >= config.patience > 0 or (config.max_steps is not None and result.steps >= config.max_steps):
                break  # a resumed run that had already stopped
            loader.set_epoch(epoch)
            record = self._train_epoch(loader, epoch, steps_per_epoch, result)
            if len(valid):
                if self.progress and not draws_bars():  # a log would otherwise say nothing while a large split is scored
                    note(f"epoch {epoch + 1}: evaluating on {len(valid):,} validation rows")
                # Computed on rank 0 and broadcast: every rank sees the same score and so takes
                # the same early-stopping decision below, and all stop together.
                record["valid"] = self.evaluate(valid)
                record["valid_score"] = validation_score(record["valid"], config.select_metric)
            result.history.append(record)
            seconds_per_epoch = (time.perf_counter() - started) / (epoch + 1 - first_epoch)
            self._report_epoch(record, self._epochs_left(epoch, steps_per_epoch, result), seconds_per_epoch)
            for callback in self.epoch_end:
                callback(record)
            if config.patience == 0 or record["valid_score"] > result.best_score:
                result.best_score = record.get("valid_score", result.best_score)
                result.waited, result.best_epoch = 0, epoch + 1
                # With patience 0 the last weights are the ones kept: no copy (a copy of tables of
                # 10^8 rows is gigabytes). Otherwise the previous copy goes before the new one is made.
                best_state = None
                current = self.model.state_dict()
                if config.patience > 0:
                    best_state = current = copy.deepcopy(current)
                if self._saves:
                    whole = distributed.gather_state(current)  # collective: sharded tables assembled on rank 0
                    if self.checkpoints is not None:
                        self.checkpoints.save_best(whole, epoch + 1, record.get("valid"))
            else:
                result.waited += 1
            if self._saves:
                state = self.state(result)  # collective under DDP: every rank takes part
                if self.checkpoints is not None:
                    self.checkpoints.save_last(state)
            if config.patience > 0 and result.waited >= config.patience:
                break
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return result

    def state(self, result: FitResult) -> dict[str, Any]:
        """Everything needed to continue after the epoch just finished (every rank's random state)."""
        rng = distributed.all_gather_object(rng_state())
        # Each process's part of the fused tables' optimizer state (its shards'), in rank order.
        fused = distributed.all_gather_object([tables.optimizer_state() for tables in sparse_tables(self.model)])
        loop = {key: getattr(result, key) for key in ("history", "best_epoch", "epochs_run", "steps", "train_samples", "train_seconds", "best_score", "waited")}
        return {
            "model": distributed.gather_state(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else {"planned_steps": self.planned_steps, "state": self.scheduler.state_dict()},
            "strategy": self.strategy.state_dict(),
            "fused_optimizers": fused,
            "loop": loop,
            "rng": rng,
        }

    def _restore(self, state: dict[str, Any]) -> tuple[FitResult, dict | None]:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._restore_schedule(state.get("scheduler"))
        self.strategy.load_state_dict(state["strategy"])
        fused = state.get("fused_optimizers") or [[]]
        for tables, part in zip(sparse_tables(self.model), fused[self.rank] if self.rank < len(fused) else []):
            tables.load_optimizer_state(part)
        result = FitResult(**state["loop"])
        rng = state["rng"]
        set_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0])
        return result, state.get("best_state")

    def _restore_schedule(self, saved: dict[str, Any] | None) -> None:
        """The schedule where the run left it; a cosine planned over another length cannot be continued."""
        if self.scheduler is None:
            return
        if saved is None:
            raise UserError("--resume: that run was saved without a learning-rate schedule's state")
        if self.config.lr_schedule == "warmup-cosine" and saved["planned_steps"] != self.planned_steps:
            raise UserError(
                f"--resume: the warmup-cosine schedule was planned over {saved['planned_steps']:,} optimizer steps and would now be "
                f"over {self.planned_steps:,}; resume with that run's --epochs and --max-steps"
            )
        self.scheduler.load_state_dict(saved["state"])

    def _train_epoch(self, loader: BatchLoader, epoch: int, steps_per_epoch: int, result: FitResult) -> dict:
        """One pass over ``loader``; returns the epoch's record (losses over all ranks, seconds)."""
        config = self.config
        self.model.train()
        total_loss, task_sums, steps, samples = 0.0, torch.zeros(self.model.task_num, dtype=torch.float64), 0, 0
        bar = Progress(steps_per_epoch, f"epoch {epoch + 1}", enabled=self.progress)
        context = StepContext(self.model, epoch=epoch, world_size=self.world_size, all_reduce_mean=distributed.mean_over_ranks)
        manual_sync = self.world_size > 1 and self.strategy.syncs_gradients
        start = time.perf_counter()
        for group in _groups(iter(loader), self.model.batches_per_step):
            context.step = result.steps
            context.recompute_losses = functools.partial(self._recompute_losses, group)
            with self.objective.no_sync() if manual_sync else contextlib.nullcontext():
                with autocast(self.device, config.precision):
                    losses = self.objective(group)
                self.optimizer.zero_grad(set_to_none=True)
                self.strategy.backward(losses, context)
            if self.world_size > 1:
                distributed.average_gradients(self.strategy.parameters())
            if config.clip_grad_norm is not None:
                # On the gradients the strategy combined, averaged over the processes: the same cut on every rank.
                nn.utils.clip_grad_norm_(self.clipped, config.clip_grad_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.strategy.after_step(context)
            task_losses = losses.tasks.detach().double().cpu()
            loss = float(task_losses.mean()) + (0.0 if losses.auxiliary is None else float(losses.auxiliary.detach()))
            total_loss += loss
            task_sums += task_losses
            steps += 1
            samples += sum(b.size for b in group)
            result.steps += 1
            if self.log is not None:
                self.log.step(result.steps, loss, task_losses.tolist())
            bar.update(postfix=f"loss {total_loss / steps:.4f}")
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
        seconds = time.perf_counter() - start
        bar.close()
        # One collective per epoch: every rank makes the same number of steps.
        totals = torch.tensor([total_loss, samples, *task_sums.tolist()], dtype=torch.float64, device=self.device)
        totals = distributed.sum_over_ranks(totals).cpu()
        denominator = steps * self.world_size
        epoch_task_losses = totals[2:] / max(denominator, 1)
        self.strategy.end_epoch(epoch_task_losses.float())
        result.train_seconds += seconds
        result.train_samples += int(totals[1])
        result.epochs_run = epoch + 1
        return {
            "epoch": epoch + 1,
            "steps": result.steps,
            "train_loss": float(totals[0]) / denominator if steps else math.nan,
            "train_task_losses": dict(zip(self.task_names, epoch_task_losses.tolist())),
            "task_weights": dict(zip(self.task_names, self.strategy.task_weights())),
            "train_seconds": seconds,
            "complete": steps == steps_per_epoch,  # False when --max-steps cut the epoch short
        }

    def _recompute_losses(self, group: list[Batch]) -> TaskLosses:
        """The step's losses computed again, with the weights as they are now (``StepContext.recompute_losses``).

        Through the model itself, not the DistributedDataParallel wrapper (a forward there would
        wait for a backward); with gradients enabled, as a model's own step may take gradients.
        """
        with autocast(self.device, self.config.precision):
            losses = self.model.task_losses(group)
        auxiliary = None if losses.auxiliary is None else losses.auxiliary.detach()
        return TaskLosses(losses.tasks.detach(), auxiliary)

    def predict(self, table: MultiTaskTable, *, forwards: int | None = None, spare: MultiTaskTable | None = None) -> torch.Tensor:
        """(N, T) float32 logits of every row of ``table``, in order, on the CPU (``mtreclib.scoring.logits``
        with the run's batch size and precision; ``forwards`` and ``spare`` pad the passes of sharded tables)."""
        config = self.config
        with self._memory():
            return logits(
                self.model, table, batch_size=config.batch_size, device=self.device, precision=config.precision, forwards=forwards, spare=spare
            )

    def evaluate(self, table: MultiTaskTable) -> dict[str, dict[str, float]]:
        """``{task: {"auc", "logloss"}}`` (and ``"gauc"`` where ``table`` has groups; a regression task: ``{"rmse", "mae"}``) of the model on the whole of ``table``, on every rank.

        With several processes each rank predicts a contiguous run of whole batches, rank 0
        gathers the logits and computes the metrics, and broadcasts them.
        """
        labels = table.label_rows()
        if self.world_size == 1:
            return logit_metrics(self.predict(table), labels, self.task_names, self.model.schema.task_types, groups=table.group)
        distributed.broadcast_buffers(self.model)  # evaluate rank 0's model on every shard
        batch_num = math.ceil(len(table) / self.config.batch_size)
        first, last = distributed.shard_range(batch_num, self.rank, self.world_size)
        shard = table.select(slice(first * self.config.batch_size, min(last * self.config.batch_size, len(table))))
        forwards = math.ceil(batch_num / self.world_size) if sparse_tables(self.model) else None
        gathered = distributed.gather_rows(self.predict(shard, forwards=forwards, spare=table).to(self.device))
        metrics = logit_metrics(gathered.cpu(), labels, self.task_names, self.model.schema.task_types, groups=table.group) if self.rank == 0 else None
        return distributed.broadcast_object(metrics)

    def _epochs_left(self, epoch: int, steps_per_epoch: int, result: FitResult) -> int:
        """Epochs still to run after ``epoch`` if early stopping does not end the run sooner."""
        left = self.config.epochs - (epoch + 1)
        if self.config.max_steps is not None:
            left = min(left, math.ceil(max(0, self.config.max_steps - result.steps) / max(steps_per_epoch, 1)))
        return left

    def _report_epoch(self, record: dict, epochs_left: int = 0, seconds_per_epoch: float = 0.0) -> None:
        if self.log is not None:
            self.log.epoch(record)
        if not self.progress:
            return
        parts = [f"epoch {record['epoch']}", f"loss {record['train_loss']:.5f}"]
        for task, m in record.get("valid", {}).items():
            if "rmse" in m:
                parts.append(f"valid {task} RMSE {m['rmse']:.5f} MAE {m['mae']:.5f}")
            else:
                gauc = f" GAUC {m['gauc']:.4f}" if m.get("gauc") is not None else ""
                parts.append(f"valid {task} AUC {m['auc']:.4f}{gauc} log-loss {m['logloss']:.5f}")
        if epochs_left > 0:
            # "at most": early stopping (--patience) may end the run sooner
            parts.append(f"{epochs_left} more epoch{'s' if epochs_left > 1 else ''} at most, about {duration(epochs_left * seconds_per_epoch)}")
        note(" | ".join(parts))


# Warn when the dropped last batch is at least this share of the training rows.
DROPPED_WARNING = 0.1
_warned: set[tuple[int, int]] = set()  # (rows, batch size) already warned about in this process (a benchmark's many runs)


def keeping_memory(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Freed CPU memory kept for the next step's tensors unless ``release_memory`` (``mtreclib.core.allocator``)."""
    return reusing_freed_memory(enabled=device.type == "cpu" and not config.release_memory)


def warn_dropped(loader: BatchLoader) -> None:
    """One line when every epoch leaves out a large share of the rows (the last, shorter batch is dropped)."""
    rows, batch_size, dropped = len(loader.table), loader.batch_size, loader.dropped_rows
    if not rows or dropped / rows < DROPPED_WARNING or (rows, batch_size) in _warned:
        return
    _warned.add((rows, batch_size))
    smaller = batch_size // 2
    while smaller > 2 and rows % smaller / rows >= DROPPED_WARNING:
        smaller //= 2
    example = f" (--batch-size {smaller} leaves out {rows % smaller:,})" if smaller >= 2 and rows % smaller / rows < DROPPED_WARNING else ""
    note(
        f"mtrec: warning: every epoch leaves out {dropped:,} of the {rows:,} training rows ({dropped / rows:.0%}): the last batch, "
        f"shorter than --batch-size {batch_size:,}, is dropped; a smaller --batch-size leaves out fewer{example}"
    )
