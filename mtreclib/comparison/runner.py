"""Run every (model, strategy, dataset, seed) of a benchmark, one JSON per run, and resume where it stopped.

A run's result is written to ``OUT/<dataset>/<model>/seed<k>.json`` (``<model>+<strategy>`` for a
multi-task optimisation strategy other than equal weights) only when the run has
finished (to a temporary name, then renamed), so a file there means a finished run: a resumed
benchmark skips it. A run that was interrupted left no file and starts again from the
beginning (runs are short enough that checkpoint-resuming inside a run is not worth its
complexity). A run that raises leaves ``seed<k>.failed.json`` with the error and its traceback,
and the benchmark goes on with the next run; the next benchmark retries it.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtreclib.comparison.machine import machine_info
from mtreclib.config.compare import differences
from mtreclib.config.experiment import TABLE, ExperimentConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core.atomic import write_json
from mtreclib.core.errors import UserError
from mtreclib.core.progress import Progress
from mtreclib.data.datasets import Dataset, load_dataset
from mtreclib.data.spec import DatasetSpec
from mtreclib.models import model_class
from mtreclib.runs.record import RunRecord
from mtreclib.training.experiment import run_experiment
from mtreclib.tuning.summary import StudySummary


@dataclass(frozen=True)
class RunSpec:
    """One cell of the benchmark: a model trained on a dataset with a strategy and a seed.

    Attributes:
        study: the tuning study whose fixed settings the run takes (``mtrec benchmark --tuned``);
            empty for a run at the benchmark's settings.
        tuned: with that study's best settings (in ``<model>@<study>/``); False: its fixed
            settings alone, the defaults' row beside it.
    """

    model: str
    dataset: str
    seed: int
    mto: str = "ew"
    study: str = ""
    tuned: bool = False

    @property
    def folder(self) -> str:
        folder = self.model if self.mto == "ew" else f"{self.model}+{self.mto}"
        return f"{folder}@{self.study}" if self.tuned else folder

    def result_path(self, out: Path) -> Path:
        return out / self.dataset / self.folder / f"seed{self.seed}.json"

    def failure_path(self, out: Path) -> Path:
        return out / self.dataset / self.folder / f"seed{self.seed}.failed.json"

    def __str__(self) -> str:
        strategy = "" if self.mto == "ew" else f" with {self.mto}"
        tuned = f" tuned by study {self.study}" if self.tuned else ""
        return f"{self.model}{strategy}{tuned} on {self.dataset}, seed {self.seed}"


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to run.

    Attributes:
        base: the settings every run shares; its model, dataset, strategy and seed are replaced per run.
        models, datasets, seeds, mtos: the grid.
        settings: the flat settings the user gave, applied to each run (a model setting only to
            the models that take it).
        out: the folder the run files go to.
        progress: show a progress bar over runs (and each run's training bars).
        studies: the tuning studies of a tuned benchmark, by name; its grid is ``plan_tuned``'s.
    """

    base: ExperimentConfig
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    out: Path
    progress: bool = True
    mtos: tuple[str, ...] = ("ew",)
    settings: dict[str, Any] = field(default_factory=dict)
    studies: dict[str, StudySummary] = field(default_factory=dict)


@dataclass
class BenchmarkSummary:
    """What a benchmark call did."""

    skipped: list[RunSpec] = field(default_factory=list)
    ran: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    planned: int = 0
    interrupted: bool = False

    @property
    def not_run(self) -> int:
        """Runs an interruption left for the next call."""
        return self.planned - len(self.skipped) - len(self.ran) - len(self.failed)


def plan_runs(models: Sequence[str], datasets: Sequence[str], seeds: Sequence[int], mtos: Sequence[str] = ("ew",)) -> list[RunSpec]:
    """Every (model, strategy, dataset, seed), dataset by dataset (one dataset in memory at a time),
    and within a dataset seed by seed: every cell's first seed comes before any cell's second, so
    an interrupted benchmark already has a whole table, and the time-left estimate, which averages
    over finished runs, sees every model early."""
    return [RunSpec(model, dataset, seed, mto) for dataset in datasets for seed in seeds for mto in mtos for model in models]


def plan_tuned(studies: Sequence[StudySummary], seeds: Sequence[int]) -> list[RunSpec]:
    """Per study, its model at the study's fixed settings (the defaults' row) and at its best settings,
    seed by seed; a defaults' row shared by studies of the same model is planned once."""
    specs = []
    for seed in seeds:
        defaults: dict[tuple[str, str, str], RunSpec] = {}
        for study in studies:
            defaults.setdefault((study.model, study.data, study.mto), RunSpec(study.model, study.data, seed, study.mto, study.name))
        for study in studies:
            specs.append(defaults.pop((study.model, study.data, study.mto), None))
            specs.append(RunSpec(study.model, study.data, seed, study.mto, study.name, tuned=True))
    return [spec for spec in specs if spec is not None]


def run_config(config: BenchmarkConfig, spec: RunSpec, *, progress: bool) -> ExperimentConfig:
    """The configuration of one run: the shared settings with this run's model, dataset, strategy and seed.

    A run of a study takes the study's fixed settings, then the ones given to the benchmark,
    then (tuned) the study's best. No checkpoint file: the trainer keeps the best weights in
    memory, and thousands of runs would otherwise leave thousands of files.
    """
    settings = config.settings
    if spec.study:
        study = config.studies[spec.study]
        settings = {**study.settings, **settings, **(study.best_params if spec.tuned else {})}
    per_run = dict(model=spec.model, dataset=spec.dataset, mto=spec.mto, seed=spec.seed, save=False, results=None, progress=progress, resume=None)
    return with_changes(config.base, **{**settings, **per_run})


def check_existing(config: BenchmarkConfig, specs: Sequence[RunSpec]) -> list[RunSpec]:
    """The runs whose result exists; a result made with other settings is a user error.

    Mixing runs of different settings in one table would compare unlike things, so this is
    refused before anything runs, naming the file and the first setting that differs.
    """
    done = []
    for spec in specs:
        path = spec.result_path(config.out)
        if not path.is_file():
            continue
        existing = RunRecord.read(path)
        found = differences(existing.config, run_config(config, spec, progress=False), TABLE)
        if found:
            raise UserError(
                f"{path} holds a run made with other settings ({found[0]}); "
                "use another --out folder, or delete the old runs to redo them"
            )
        done.append(spec)
    return done


def check_shared_defaults(config: BenchmarkConfig, specs: Sequence[RunSpec]) -> None:
    """Studies of one model on one dataset share the defaults' row: refused when their fixed settings differ."""
    first: dict[Path, tuple[str, dict[str, Any]]] = {}
    for spec in specs:
        if spec.tuned:
            continue
        for study in config.studies.values():
            if (study.model, study.data, study.mto) != (spec.model, spec.dataset, spec.mto):
                continue
            wanted = run_config(config, RunSpec(spec.model, spec.dataset, spec.seed, spec.mto, study.name), progress=False).to_dict()
            path = spec.result_path(config.out)
            seen = first.setdefault(path, (study.name, wanted))
            found = differences(seen[1], wanted, TABLE)
            difference = "; ".join(found) if found else None
            if difference is not None:
                raise UserError(
                    f"studies {seen[0]} and {study.name} tune {spec.model} on {spec.dataset} with other fixed settings "
                    f"({difference}); benchmark them into separate --out folders"
                )


def check_datasets(folders: dict[str, str]) -> dict[str, DatasetSpec | None]:
    """Refuse a dataset that cannot be found (name -> its data folder) before hours of other runs; their specs (None: built in)."""
    from mtreclib.data.datasets import find_dataset

    return {name: find_dataset(name, data_dir) for name, data_dir in folders.items()}


def check_roles(experiments: Sequence[ExperimentConfig], specs: dict[str, DatasetSpec | None]) -> None:
    """Refuse a model that needs fields of a role (PEPNet's prior) on a dataset whose spec gives none, before the first run.

    Every run of the pair would fail the same way, and "run again to retry" would not help.
    The built-in datasets (no spec) have roles.
    """
    for experiment in experiments:
        needed = model_class(experiment.model).needed_roles(experiment.model_config)
        spec = specs.get(experiment.data.dataset)
        if not needed or spec is None or any(field.role in needed for field in spec.categorical):
            continue
        raise UserError(
            f"model {experiment.model} needs fields whose role is {' or '.join(needed)} (the `role:` key of the dataset spec) "
            f"and dataset {experiment.data.dataset}'s spec{f' {spec.path}' if spec.path else ''} gives none: "
            f"add roles to its categorical fields or leave {experiment.model} out of --models"
        )


@dataclass(frozen=True)
class RunFailure:
    """Why a run failed: one line for the summary, the traceback for the failure record."""

    message: str
    traceback: str

    @classmethod
    def current(cls, prefix: str = "") -> RunFailure:
        """The exception being handled."""
        error = sys.exc_info()[1]
        lines = str(error).strip().splitlines() or [""]
        return cls(f"{prefix}{type(error).__name__}: {lines[0]}", traceback.format_exc())


def _result_line(spec: RunSpec, record: RunRecord, seconds: float) -> str:
    metrics = ", ".join(f"{task} RMSE {m.rmse:.4f}" if m.regression else f"{task} AUC {m.auc:.4f}" for task, m in record.tasks.items())
    return f"done   {spec}: {metrics} ({seconds:.0f} s)"


def run_benchmark(config: BenchmarkConfig) -> BenchmarkSummary:
    """Run every pending run of the grid; finished runs are skipped, failed ones recorded.

    Settings that cannot work for any run (an unknown model, zero epochs, a missing dataset
    folder) are refused before the first run. A run that raises any ``Exception`` is recorded
    and the next one starts; ``KeyboardInterrupt`` stops the benchmark (the runs finished so
    far are kept, and the summary says so).
    """
    if config.studies:
        specs = plan_tuned(list(config.studies.values()), config.seeds)
        check_shared_defaults(config, specs)
    else:
        specs = plan_runs(config.models, config.datasets, config.seeds, config.mtos)
    first_seed = len(specs) // len(config.seeds) if config.studies else len(config.models) * len(config.mtos)
    # Every model and strategy's settings, and every dataset, checked before the first run; a
    # study's runs read their data where it was tuned (its --data-dir).
    experiments = [run_config(config, spec, progress=False) for spec in specs[:first_seed]]
    folders = {c.data.dataset: c.data.data_dir for c in experiments}
    folders = {name: folders.get(name, config.base.data.data_dir) for name in config.datasets} if not config.studies else folders
    check_roles(experiments, check_datasets(folders))
    summary = BenchmarkSummary(skipped=check_existing(config, specs), planned=len(specs))
    pending = [spec for spec in specs if spec not in set(summary.skipped)]
    bar = Progress(len(specs), "benchmark", enabled=config.progress, unit="run", initial=len(summary.skipped))
    loaded: str | None = None
    dataset: Dataset | None = None
    load_failure: RunFailure | None = None
    try:
        for spec in pending:
            if spec.dataset != loaded:
                dataset = None  # free the previous dataset before loading the next
                dataset, load_failure = _load(spec.dataset, folders[spec.dataset], config.base.data.cache_dir, config.base.data.gauc_group)
                loaded = spec.dataset
            failure = load_failure or _run_one(config, spec, dataset, bar)
            if failure is None:
                summary.ran.append(spec)
            else:
                summary.failed.append((spec, failure.message))
                record = {"model": spec.model, "dataset": spec.dataset, "seed": spec.seed, "mto": spec.mto,
                          "error": failure.message, "traceback": failure.traceback}
                write_json(spec.failure_path(config.out), record)
                bar.write(f"FAILED {spec}: {failure.message}")
            bar.update(postfix=str(spec))
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    return summary


def _load(name: str, data_dir: str, cache_dir: str | None, group: str | None = None) -> tuple[Dataset | None, RunFailure | None]:
    """Load a dataset once for all its runs (``group``: ``--gauc-group``); an error fails those runs, not the benchmark."""
    try:
        return load_dataset(name, data_dir, cache_dir=cache_dir, group=group), None
    except Exception:  # noqa: BLE001 - a dataset that fails to load fails its own runs only
        return None, RunFailure.current(f"loading dataset {name!r} failed: ")


def _run_one(config: BenchmarkConfig, spec: RunSpec, dataset: Dataset | None, bar: Progress) -> RunFailure | None:
    """Run ``spec`` and write its result; None, or why it failed."""
    experiment = run_config(config, spec, progress=config.progress)
    started = datetime.now(timezone.utc)
    start = time.perf_counter()
    try:
        record = run_experiment(experiment, dataset=dataset, announce=False)
    except Exception:  # noqa: BLE001 - a failed run must not stop the others
        return RunFailure.current()
    seconds = time.perf_counter() - start
    record = replace(
        record,
        run={"started": started.isoformat(timespec="seconds"), "wall_seconds": seconds},
        machine=machine_info(record.device),
        tuned=config.studies[spec.study].to_dict() if spec.tuned else None,
    )
    record.write(spec.result_path(config.out))
    spec.failure_path(config.out).unlink(missing_ok=True)  # an earlier failure of this run is history
    bar.write(_result_line(spec, record, seconds))
    return None
