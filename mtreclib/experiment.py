"""One training run from a configuration: data, model, training, test metrics, results JSON.

Shared by ``mtrec train``, the original's ``main.py`` and the benchmark runner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mtreclib.data.datasets import Dataset, load_dataset
from mtreclib.data.table import split_validation
from mtreclib.distributed import ProcessPlace
from mtreclib.errors import UserError
from mtreclib.metrics import task_metrics
from mtreclib.models import create_model, model_class, model_kwargs
from mtreclib.trainer import PRECISIONS, Trainer, TrainConfig


@dataclass
class ExperimentConfig:
    """Everything one run needs; the defaults reproduce the original MTReclib's settings.

    Attributes:
        model: a registered model name.
        dataset: a built-in dataset or a folder ``data_dir/<dataset>`` in the processed layout.
        data_dir: where processed datasets live.
        task_num: train on the first ``task_num`` tasks.
        model_config: keyword arguments for the model (``embed_dim``, ``expert_num``, ...); keys a
            model does not take are left out for it (``expert_num`` means nothing to AITM).
        valid_fraction: share of the training file held out for validation.
        valid_split: ``"tail"`` (the last rows; the files are in time order) or ``"random"``.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        save_dir: checkpoints go to ``save_dir/<dataset>_<model>.pt``; None keeps none.
        train: optimisation settings.
    """

    model: str = "mmoe"
    dataset: str = "synthetic"
    data_dir: str = "data"
    task_num: int = 2
    model_config: dict[str, Any] = field(default_factory=lambda: {"embed_dim": 128, "expert_num": 8})
    valid_fraction: float = 0.1
    valid_split: str = "tail"
    device: str = "auto"
    save_dir: str | None = "chkpt"
    train: TrainConfig = field(default_factory=TrainConfig)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuse CUDA on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for, but PyTorch sees no CUDA device here; use --device cpu or auto")
    return device


def check_config(config: ExperimentConfig) -> None:
    """Refuse settings that cannot work before any data is loaded."""
    model_class(config.model)  # unknown name -> the list of known ones
    train = config.train
    problems = [
        (train.epochs < 1, f"epochs must be at least 1, got {train.epochs}"),
        (train.batch_size < 2, f"batch size must be at least 2 (BatchNorm), got {train.batch_size}"),
        (train.lr <= 0, f"learning rate must be positive, got {train.lr}"),
        (train.weight_decay < 0, f"weight decay must be >= 0, got {train.weight_decay}"),
        (train.patience < 0, f"patience must be >= 0, got {train.patience}"),
        (train.max_steps is not None and train.max_steps < 1, f"max steps must be at least 1, got {train.max_steps}"),
        (not 0 <= config.valid_fraction < 1, f"validation fraction must be in [0, 1), got {config.valid_fraction}"),
        (config.valid_split not in ("tail", "random"), f"validation split must be tail or random, got {config.valid_split!r}"),
        (config.task_num < 1, f"task number must be at least 1, got {config.task_num}"),
        (train.precision not in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {train.precision!r}"),
    ]
    for failed, message in problems:
        if failed:
            raise UserError(message)


def build_model(name: str, dataset: Dataset, task_num: int, config: dict[str, Any]) -> torch.nn.Module:
    """The model ``name`` for ``dataset``'s first ``task_num`` tasks; bad settings are user errors."""
    try:
        schema = dataset.schema.with_tasks(task_num)
        return create_model(name, schema, **model_kwargs(name, config))
    except ValueError as error:
        raise UserError(str(error)) from None


def run_experiment(config: ExperimentConfig, *, dataset: Dataset | None = None, place: ProcessPlace | None = None) -> dict[str, Any]:
    """Train and test one model; returns the results (the ``--results`` JSON).

    ``dataset`` skips loading when the caller already holds it (several runs on one dataset).
    ``place``: this process among several (its process group already initialised, see
    ``mtreclib.distributed``); every rank returns the same results, and only rank 0 should
    write them. ``config.train.batch_size`` stays the global batch.
    """
    place = place or ProcessPlace()
    check_config(config)
    if config.train.batch_size < 2 * place.world_size:
        raise UserError(
            f"batch size {config.train.batch_size} is the global batch, shared by {place.world_size} processes: "
            f"it must be at least {2 * place.world_size} so that each process's BatchNorm sees 2 rows"
        )
    device = place.device(resolve_device(config.device))
    dataset = dataset or load_dataset(config.dataset, config.data_dir)
    train, valid = split_validation(dataset.train, config.valid_fraction, mode=config.valid_split, seed=config.train.seed)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, dataset, config.task_num, config.model_config).to(device)
    if place.distributed:
        # The same initialisation on every rank, then dropout masks of each rank's own.
        torch.manual_seed(config.train.seed + place.rank)
    train_config = config.train
    if config.save_dir is not None:
        checkpoint = Path(config.save_dir) / f"{dataset.name}_{config.model}.pt"
        train_config = replace(train_config, checkpoint=checkpoint)
    trainer = Trainer(model, train_config, device, rank=place.rank, world_size=place.world_size)
    fit = trainer.fit(train, valid)
    tasks = trainer.evaluate(dataset.test)
    results: dict[str, Any] = {
        "model": config.model,
        "dataset": dataset.name,
        "tasks": tasks,
        "train_samples_per_sec": fit.samples_per_second,
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "steps": fit.steps,
        "train_seconds": fit.train_seconds,
        "history": fit.history,
        "parameters": sum(p.numel() for p in model.parameters()),
        "rows": {"train": len(train), "valid": len(valid), "test": len(dataset.test)},
        "device": str(device),
        "world_size": place.world_size,
        "config": _jsonable(asdict(config)),
    }
    if dataset.test.probabilities is not None:
        results["oracle"] = task_metrics(
            dataset.test.probabilities[:, : config.task_num],
            dataset.test.labels[:, : config.task_num],
            model.schema.task_names,
        )
    return results


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def format_results(results: dict[str, Any]) -> str:
    """The test metrics as a small table, with the oracle's next to them when known."""
    oracle = results.get("oracle")
    header = f"{'task':<12} {'AUC':>8} {'log-loss':>10}"
    if oracle:
        header += f" {'oracle AUC':>11} {'oracle log-loss':>16}"
    lines = [f"test results: {results['model']} on {results['dataset']}", header]
    for task, m in results["tasks"].items():
        line = f"{task:<12} {m['auc']:>8.4f} {m['logloss']:>10.5f}"
        if oracle:
            line += f" {oracle[task]['auc']:>11.4f} {oracle[task]['logloss']:>16.5f}"
        lines.append(line)
    lines.append(
        f"epochs run {results['epochs_run']}, best epoch {results['best_epoch']}, "
        f"{results['train_samples_per_sec']:,.0f} training samples/s on {results['device']}"
    )
    return "\n".join(lines)
