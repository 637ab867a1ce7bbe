"""``tune``: check everything, open or continue the study, run the trials in one or more processes.

Everything that can be refused is refused before the first trial, each with one line: the
settings (an unknown model, a bad value), the search space (an unknown key, a range outside its
setting's bounds, extremes that cannot go together), the storage (an unreachable URL), the data
(no such dataset, no validation split) and the study (one that tunes other settings).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection
from dataclasses import dataclass

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core.errors import UserError
from mtreclib.core.progress import note
from mtreclib.data.datasets import find_dataset, load_dataset
from mtreclib.tuning.available import require_optuna
from mtreclib.tuning.config import TuneConfig
from mtreclib.tuning.space import SearchSpace
from mtreclib.tuning.storage import open_storage, shown
from mtreclib.tuning.study import StudyIdentity, default_name, make_pruner, make_sampler, open_study, sampler_seed
from mtreclib.tuning.summary import StudySummary, format_seconds
from mtreclib.tuning.trial import settings_text
from mtreclib.tuning.workers import WorkerJob, epochs, run_workers, shares, without_test, work, worker_threads


@dataclass(frozen=True)
class TuneResult:
    """What a ``tune`` call did: the study's summary after it, and each worker's exit status."""

    summary: StudySummary
    trials_before: int
    exit_codes: tuple[int, ...]


def quiet(config: ExperimentConfig) -> ExperimentConfig:
    """A trial's run settings: no checkpoint or results files, no bars (a line per trial instead)."""
    run = dataclasses.replace(config.run, save=False, results=None, progress=False, tensorboard=None, resume=None)
    return dataclasses.replace(config, run=run)


def tune(config: ExperimentConfig, settings: TuneConfig, *, fixed: Collection[str] = ()) -> TuneResult:
    """Add ``settings.trials`` trials to the study of ``config``'s model on its dataset; returns its summary.

    ``fixed``: the settings the user gave, which keep their value unless ``settings.space`` searches them.
    """
    optuna = require_optuna()
    config = quiet(config)
    space = SearchSpace.build(config, settings.space, fixed=fixed)
    storage = open_storage(settings.storage)
    find_dataset(config.data.dataset, config.data.data_dir)  # a missing dataset is refused before it would be loaded
    dataset = without_test(load_dataset(config.data.dataset, config.data.data_dir, cache_dir=config.data.cache_dir, group=config.data.gauc_group))
    if dataset.valid is None and config.data.valid_fraction == 0:
        raise UserError("tuning selects settings on a validation split: set --valid-fraction above 0 (this dataset has no validation split)")
    if settings.workers > 1 and config.train.threads is None:
        config = with_changes(config, threads=worker_threads(settings.workers))
    identity = StudyIdentity.of(config, dataset.name)
    name = settings.study or default_name(config, dataset.name)
    sampler = make_sampler(optuna, config.train.seed, settings.startup_trials)
    pruner = make_pruner(optuna, settings.pruner, settings.startup_trials, config.train.epochs)
    study = open_study(optuna, storage, settings.storage, name, identity, space, sampler=sampler, pruner=pruner)
    before = len(study.get_trials(deepcopy=False))
    deadline = None if settings.timeout_seconds is None else time.time() + settings.timeout_seconds
    jobs = [
        WorkerJob(
            config=config.to_dict(),
            searches=space.searches,
            storage=settings.storage,
            study=name,
            trials=share,
            deadline=deadline,
            seed=sampler_seed(config.train.seed, before, worker),
            pruner=settings.pruner,
            startup_trials=settings.startup_trials,
            worker=worker,
            workers=settings.workers,
        )
        for worker, share in enumerate(shares(settings.trials, settings.workers))
    ]
    _announce(config, settings, name, before, space, dataset.name)
    if len(jobs) == 1:
        work(jobs[0], dataset)
        codes: list[int] = [0]
    else:
        codes = run_workers(jobs, dataset)
    study = optuna.load_study(study_name=name, storage=storage)
    return TuneResult(StudySummary.of(optuna, study, settings.storage), before, tuple(codes))


def _announce(config: ExperimentConfig, settings: TuneConfig, name: str, before: int, space: SearchSpace, dataset: str) -> None:
    state = f"continuing it after {before} trials" if before else "a new study"
    note(f"mtrec tune: study {name!r} in {shown(settings.storage)} ({state}): {config.model} on {dataset}, strategy {config.train.mto}")
    limit = f", for at most {settings.timeout}" if settings.timeout else ""
    workers = f"{settings.workers} workers" if settings.workers > 1 else "1 worker"
    note(
        f"mtrec tune: {settings.trials} trials{limit}, {workers}, TPE seeded from seed {config.train.seed}, pruner {settings.pruner}, "
        f"up to {epochs(config.train.epochs)} a trial; searching {'; '.join(space.describe())}"
    )


def format_result(result: TuneResult) -> str:
    """The study's state and best settings, for the end of ``mtrec tune``."""
    s = result.summary
    counts = ", ".join(f"{count} {state}" for state, count in sorted(s.trials.items()))
    lines = [
        f"study {s.name} in {s.storage}: {sum(s.trials.values())} trials ({counts}); "
        f"{s.epochs} epochs, {format_seconds(s.cpu_seconds)} CPU, {format_seconds(s.wall_seconds)} in trials",
        f"best: trial {s.best_trial}, validation score {s.best_value:.4f}",
        f"best settings: {settings_text(s.best_params)}",
        f"retrain over seeds and test once: mtrec benchmark --tuned {s.storage}",
    ]
    failed = [code for code in result.exit_codes if code != 0]
    if failed:
        lines.append(f"{len(failed)} worker(s) stopped early (exit status {', '.join(map(str, failed))}); the same command continues the study")
    return "\n".join(lines)
