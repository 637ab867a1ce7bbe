"""One training run from a configuration: data, model, training, test metrics, results record.

Shared by ``mtrec train``, the original's ``main.py`` and the benchmark runner. Everything that
can be refused is refused before training starts: the settings (when they are built), the
output paths, the data and the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from mtreclib.config.compare import differences
from mtreclib.config.experiment import RESUME, ExperimentConfig
from mtreclib.config.files import read_config_file
from mtreclib.config.resolve import resolve, with_changes
from mtreclib.core import distributed
from mtreclib.core.atomic import atomic_output, check_writable
from mtreclib.core.device import resolve_device
from mtreclib.core.distributed import ProcessPlace
from mtreclib.core.errors import UserError
from mtreclib.core.metrics import task_metrics
from mtreclib.core.progress import note
from mtreclib.core.schema import Batch, FeatureSchema
from mtreclib.data.datasets import Dataset, load_dataset
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable, split_validation
from mtreclib.embeddings import use_torchrec
from mtreclib.embeddings.backend import check_backend
from mtreclib.models import MultiTaskModel, create_model
from mtreclib.mto import create_strategy
from mtreclib.nn.layers import deferred_tables, sparse_tables
from mtreclib.runs import checkpoint
from mtreclib.runs.checkpoint import ModelCheckpoint, RunDescription, RunDirectory
from mtreclib.runs.record import EpochRecord, RunRecord, metrics_map
from mtreclib.training.precision import resolve_precision
from mtreclib.training.tensorboard import TensorBoardLog, check_available
from mtreclib.training.trainer import Trainer, keeping_memory


def check_outputs(config: ExperimentConfig) -> None:
    """Every path the run will write, checked before any data is loaded."""
    if config.run.save:
        check_writable(config.run.save_dir, "--save-dir", folder=True)
    if config.run.results:
        check_writable(config.run.results, "--results")
    if config.data.cache_dir:
        check_writable(config.data.cache_dir, "--cache-dir", folder=True)
    if config.run.tensorboard:

        check_writable(config.run.tensorboard, "--tensorboard", folder=True)
        check_available()


def check_groups(config: ExperimentConfig, dataset: str, grouped: bool) -> None:
    """``--select-metric gauc`` needs rows with groups: refused before training when the data has none."""
    if config.train.select_metric == "gauc" and not grouped:
        raise UserError(
            f"--select-metric gauc: dataset {dataset} has no group column to compute GAUC within; "
            "name one with --gauc-group COLUMN or the spec's group: key"
        )


def build_model(name: str, schema: FeatureSchema, config: Any) -> MultiTaskModel:
    """The model ``name`` for ``schema``; settings that cannot work for this data are user errors."""
    try:
        return create_model(name, schema, config)
    except ValueError as error:
        raise UserError(f"{name}: {error}") from None


def build_training_model(
    config: ExperimentConfig, schema: FeatureSchema, device: torch.device, place: ProcessPlace
) -> tuple[MultiTaskModel, list[dict[str, Any]]]:
    """The model to train, on ``device``, its tables on the configured embedding backend.

    On the torchrec backend the model is built without dense tables (a vocabulary of 10^8 ids is
    never allocated as one ``nn.Embedding``) and each field gets a TorchRec table, sharded across
    the processes under torchrun. Returns the model and the sharding plan (empty in one process).
    """
    train = config.train
    if train.embedding_backend == "dense":
        return build_model(config.model, schema, config.model_config).to(device), []

    with deferred_tables():
        model = build_model(config.model, schema, config.model_config)
    use_torchrec(model, optimizer=train.embedding_optimizer, lr=train.embedding_lr, device=device, sharded=place.distributed)
    model = model.to(device)
    if not place.distributed:
        return model, []
    from mtreclib.embeddings.sharding import shard_tables

    return model, shard_tables(model, train, device)


def parameter_count(model: MultiTaskModel) -> int:
    """Every weight of the model: its parameters and the sparse tables' (which are none of them)."""
    return sum(p.numel() for p in model.parameters()) + sum(t.element_count for t in sparse_tables(model))


class RunCheckpoints:
    """The trainer's checkpoints, written into a run folder, each describing itself."""

    def __init__(self, directory: RunDirectory, config: ExperimentConfig, dataset: Dataset):
        self.directory = directory
        self.run = RunDescription(dataset=dataset.name, config=config, schema=dataset.schema, encoding=dataset.encoding)

    def save_best(self, state_dict: dict[str, torch.Tensor], epoch: int, valid: dict | None) -> None:
        ModelCheckpoint(self.run, state_dict, epoch, valid).save(self.directory.best)

    def save_last(self, state: dict[str, Any]) -> None:
        checkpoint.save(self.directory.last, {"kind": "resume", "config": self.run.config.to_dict(), **state})


def _run_directory(config: ExperimentConfig, dataset_name: str, place: ProcessPlace) -> tuple[RunDirectory | None, dict | None]:
    """This run's folder and, when resuming, the state to resume from (every rank reads it)."""

    if not config.run.save:
        if config.run.resume:
            raise UserError("--resume needs the run's checkpoints; it cannot be combined with --no-save")
        return None, None
    if config.run.resume:
        if config.run.resume == "last":
            runs = [run for run in RunDirectory.existing(config.run.save_dir, dataset_name, config.model) if _resumable(run)]
            if not runs:
                parent = RunDirectory.parent(config.run.save_dir, dataset_name, config.model)
                raise UserError(f"--resume: no run of {config.model} on {dataset_name} to resume in {parent} (same --save-dir?)")
            directory = runs[-1]
        else:
            directory = RunDirectory(Path(config.run.resume))
            if not _resumable(directory):
                what = "no such folder" if not directory.path.is_dir() else f"not a run folder (it has neither {checkpoint.LAST} nor {checkpoint.CONFIG})"
                raise UserError(f"--resume {directory.path}: {what}")
        if not directory.last.is_file():
            # Stopped before its first epoch ended: no state to resume but the run's settings.
            _check_unchanged(directory, resolve(read_config_file(directory.config)), config)
            note(f"mtrec: {directory.path} was stopped before its first epoch ended: training it from the start")
            return directory, None
        state = checkpoint.load(directory.path, "resume")
        try:
            # Through the typed configuration: a setting added since that run compares at its default.
            before = ExperimentConfig.from_dict(state["config"])
        except UserError as error:
            raise UserError(f"{directory.last}: {error}") from None
        _check_unchanged(directory, before, config)
        if directory.best.is_file():
            state["best_state"] = checkpoint.load(directory.best, "model")["state_dict"]
        return directory, state
    directory = RunDirectory.create(config.run.save_dir, dataset_name, config.model) if place.is_main else None
    path = distributed.broadcast_object(None if directory is None else str(directory.path))
    return RunDirectory(Path(path)), None


def _precision(config: ExperimentConfig, model: MultiTaskModel, train: MultiTaskTable, device: torch.device, place: ProcessPlace,
               resume: dict | None) -> tuple[ExperimentConfig, str]:
    """``config`` with ``--precision auto`` resolved (see ``mtreclib.training.precision``), and why; ``why`` is empty otherwise."""
    if config.train.precision != "auto":
        return config, ""
    if resume is not None:
        precision, why = ExperimentConfig.from_dict(resume["config"]).train.precision, "auto: the resumed run's choice"
    else:
        def batches() -> list[Batch]:
            loader = BatchLoader(train, config.train.batch_size, device=device, rank=place.rank, world_size=place.world_size)
            return list(itertools.islice(iter(loader), model.batches_per_step))

        # Every rank probes (a sharded model's passes are collective); rank 0's finding decides for all.
        # Memory as training will have it: fresh pages would slow fp32's larger tensors more.
        with keeping_memory(config.train, device):
            found = resolve_precision("auto", model, batches, device)
        precision, why = distributed.broadcast_object(found)
    return with_changes(config, precision=precision), why


def _resumable(run: RunDirectory) -> bool:
    """A run folder with a finished epoch, or stopped before its first ended (its settings written)."""
    return run.last.is_file() or run.config.is_file()


def _check_unchanged(directory: RunDirectory, before: ExperimentConfig, config: ExperimentConfig) -> None:
    # "auto" resumes with the precision the run chose when it started.
    asked = with_changes(config, precision=before.train.precision) if config.train.precision == "auto" else config
    changed = differences(before, asked, RESUME)
    if changed:
        raise UserError(
            f"--resume {directory.path}: the settings differ from that run's ({changed[0]}); "
            "only how long it trains (--epochs, --max-steps) and where it runs may change"
        )


def _tables(config: ExperimentConfig) -> str:
    train = config.train
    if train.embedding_backend == "dense":
        return "dense tables"
    return f"torchrec tables ({train.embedding_optimizer}, lr {train.embedding_lr:g})"


def _banner(config: ExperimentConfig, dataset: Dataset, model: MultiTaskModel, rows: dict[str, int], device: torch.device,
            directory: RunDirectory | None, resume: dict | None, place: ProcessPlace, why: str = "") -> None:
    parameters = parameter_count(model)
    processes = f", {place.world_size} processes" if place.distributed else ""
    counts = ", ".join(f"{split} {count:,}" for split, count in rows.items())
    note(f"mtrec: {config.model} on {dataset.name}: tasks {', '.join(dataset.schema.task_names)}; rows {counts}; {parameters:,} parameters")
    where = f"run folder {directory.path}" if directory is not None else "no checkpoints (--no-save)"
    note(
        f"mtrec: {device}, {torch.get_num_threads()} threads{processes}, {config.train.precision}, strategy {config.train.mto}, "
        f"{_tables(config)}, "
        f"batch {config.train.batch_size}, up to {config.train.epochs} epochs; {where}"
    )
    if why:
        note(f"mtrec: precision {config.train.precision} ({why})")
    if resume is not None:
        note(f"mtrec: resuming after epoch {resume['loop']['epochs_run']} (step {resume['loop']['steps']:,})")


def run_experiment(
    config: ExperimentConfig,
    *,
    dataset: Dataset | None = None,
    place: ProcessPlace | None = None,
    announce: bool = True,
    epoch_end: Sequence[Callable[[dict], None]] = (),
    test: bool = True,
) -> RunRecord:
    """Train and test one model; returns its results record.

    ``dataset`` skips loading when the caller already holds it (several runs on one dataset).
    ``place``: this process among several (its process group already initialised, see
    ``mtreclib.core.distributed``); every rank returns the same results, and only rank 0 writes.
    ``config.train.batch_size`` stays the global batch. ``announce``: print what runs, and
    where its files go, before training. ``epoch_end``: the trainer's per-epoch callbacks.
    ``test=False``: the test split is never touched (``dataset.test`` may be None); the record
    holds the validation metrics of the epoch training kept, as split ``valid`` (what a tuner
    selects settings on).
    """
    place = place or ProcessPlace()
    if config.train.batch_size < 2 * place.world_size:
        raise UserError(
            f"batch size {config.train.batch_size} is the global batch, shared by {place.world_size} processes: "
            f"it must be at least {2 * place.world_size} so that each process's BatchNorm sees 2 rows"
        )
    check_outputs(config)
    device = place.device(resolve_device(config.run.device))
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    if config.train.embedding_backend == "torchrec":

        check_backend(config.train.embedding_optimizer, getattr(config.model_config, "embed_dim", None), device)
    dataset = dataset or load_dataset(config.data.dataset, config.data.data_dir, cache_dir=config.data.cache_dir, group=config.data.gauc_group)
    dataset = dataset.select_tasks(config.data.tasks, config.data.task_num)
    if dataset.valid is not None:
        train, valid = dataset.train, dataset.valid
    else:
        train, valid = split_validation(dataset.train, config.data.valid_fraction, mode=config.data.valid_split, seed=config.train.seed)
    check_groups(config, dataset.name, valid.group is not None)
    torch.manual_seed(config.train.seed)
    model, plan = build_training_model(config, dataset.schema, device, place)
    try:
        strategy = create_strategy(config.train.mto, model.task_num, config.mto_config)
    except ValueError as error:
        raise UserError(f"--mto {config.train.mto}: {error}") from None
    directory, resume = _run_directory(config, dataset.name, place)
    config, why = _precision(config, model, train, device, place, resume)
    rows = {"train": len(train), "valid": len(valid), **({"test": len(dataset.test)} if test else {})}
    if announce and place.is_main:
        _banner(config, dataset, model, rows, device, directory, resume, place, why)
    if place.distributed:
        # The same initialisation on every rank, then dropout masks of each rank's own.
        torch.manual_seed(config.train.seed + place.rank)
    checkpoints = None
    if directory is not None:
        checkpoints = RunCheckpoints(directory, config, dataset)
        if place.is_main:
            write_config(directory.config, config)
    log = None
    if config.run.tensorboard and place.is_main:

        sub = directory.path.relative_to(config.run.save_dir) if directory is not None else Path(f"{dataset.name}_{config.model}")
        log = TensorBoardLog(Path(config.run.tensorboard) / sub, dataset.schema.task_names)
    trainer = Trainer(
        model,
        config.train,
        device,
        strategy=strategy,
        rank=place.rank,
        world_size=place.world_size,
        progress=config.run.progress,
        checkpoints=checkpoints,
        log=log,
        epoch_end=epoch_end,
    )
    try:
        fit = trainer.fit(train, valid, resume=resume)
    except KeyboardInterrupt:
        if directory is None:
            raise
        raise KeyboardInterrupt(f"mtrec train --resume {directory.path} continues this run") from None
    finally:
        if log is not None:
            log.close()
    if test:
        tasks = trainer.evaluate(dataset.test)
        probabilities = dataset.test.probability_rows()
        oracle = (
            task_metrics(probabilities, dataset.test.label_rows(), dataset.schema.task_names, groups=dataset.test.group) if probabilities is not None else None
        )
    else:
        tasks, oracle = fit.history[fit.best_epoch - 1].get("valid", {}), None
    history = tuple(EpochRecord.from_dict(record) for record in fit.history)
    record = RunRecord(
        model=config.model,
        dataset=dataset.name,
        tasks=metrics_map(tasks),
        config=config.to_dict(),
        train_samples_per_sec=fit.samples_per_second,
        epochs_run=fit.epochs_run,
        best_epoch=fit.best_epoch,
        steps=fit.steps,
        train_seconds=fit.train_seconds,
        history=history,
        oracle=metrics_map(oracle),
        parameters=parameter_count(model),
        rows=rows,
        device=str(device),
        world_size=place.world_size,
        checkpoint=str(directory.best) if directory is not None and directory.best.is_file() else None,
        seed=config.train.seed,
        sharding=plan,
        split="test" if test else "valid",
    )
    if directory is not None and place.is_main:
        record.write(directory.results)
    return record


def write_config(path: Path, config: ExperimentConfig) -> None:
    """The resolved configuration as a flat config file (``mtrec train --config`` reads it back)."""

    flat = {key: list(value) if isinstance(value, tuple) else value for key, value in config.flat().items() if key != "resume"}
    with atomic_output(path) as temporary:
        temporary.write_text("# The resolved configuration of this run; mtrec train --config reads it back.\n" + yaml.safe_dump(flat, sort_keys=False))


def format_results(record: RunRecord) -> str:
    """The test metrics as a small table (GAUC where the data has groups, with the groups it
    used and skipped), with the oracle's next to them when known."""
    oracle = record.oracle
    grouped = any(m.gauc is not None for m in record.tasks.values())
    header = f"{'task':<16} {'AUC':>8}" + (f" {'GAUC':>8}" if grouped else "") + f" {'log-loss':>10}"
    if oracle:
        header += f" {'oracle AUC':>11} {'oracle log-loss':>16}"
    if grouped:
        header += f" {'groups used / skipped':>22}"
    lines = [f"{record.split} results: {record.model} on {record.dataset}", header]
    regression = {task: m for task, m in record.tasks.items() if m.regression}
    for task, m in record.tasks.items():
        if m.regression:
            continue
        line = f"{task:<16} {m.auc:>8.4f}"
        if grouped:
            line += f" {m.gauc:>8.4f}" if m.gauc is not None else f" {'–':>8}"
        line += f" {m.logloss:>10.5f}"
        if oracle:
            line += f" {oracle[task].auc:>11.4f} {oracle[task].logloss:>16.5f}"
        if grouped and m.gauc_groups is not None:
            line += f" {f'{m.gauc_groups:,} / {m.gauc_skipped:,}':>22}"
        lines.append(line)
    if regression:
        lines.append(f"{'regression task':<16} {'RMSE':>8} {'MAE':>10}")
        lines += [f"{task:<16} {m.rmse:>8.4f} {m.mae:>10.5f}" for task, m in regression.items()]
    if record.epochs_run:
        lines.append(
            f"epochs run {record.epochs_run}, best epoch {record.best_epoch}, "
            f"{record.train_samples_per_sec:,.0f} training samples/s on {record.device}"
        )
    if record.checkpoint:
        lines.append(f"checkpoint: {record.checkpoint}")
    return "\n".join(lines)


def experiment(**settings: Any) -> ExperimentConfig:
    """An ``ExperimentConfig`` from flat settings, as on the command line: ``experiment(model="ple", epochs=3)``."""
    return resolve(settings)

