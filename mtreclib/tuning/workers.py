"""Worker processes: each opens the study in the shared storage and runs its share of the trials.

With ``--workers N`` this process is worker 0 and N - 1 more are started (``spawn``: fresh
interpreters, no forked PyTorch state). They share nothing but the database: each asks the study
for its next point (TPE's "constant liar" treats the others' running trials as if they had
scored badly, so they do not all try the same point), and commits each trial as it ends. A worker
that dies takes only its running trial with it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.core.errors import UserError
from mtreclib.core.progress import note
from mtreclib.core.settings import Search
from mtreclib.data.datasets import Dataset, load_dataset
from mtreclib.tuning.available import require_optuna
from mtreclib.tuning.space import SearchSpace
from mtreclib.tuning.storage import open_storage
from mtreclib.tuning.study import make_pruner, make_sampler
from mtreclib.tuning.trial import Objective, settings_text


@dataclass(frozen=True)
class WorkerJob:
    """What one worker does, as picklable plain data.

    Attributes:
        config: the fixed settings (``ExperimentConfig.to_dict``).
        searches: the space (setting key -> ``Search``).
        trials: this worker's share of the trials.
        deadline: start no trial after this ``time.time()``; None: no limit.
        seed: its sampler's seed.
    """

    config: dict[str, Any]
    searches: dict[str, Search]
    storage: str
    study: str
    trials: int
    deadline: float | None
    seed: int
    pruner: str
    startup_trials: int
    worker: int = 0
    workers: int = 1


def shares(trials: int, workers: int) -> list[int]:
    """``trials`` split among ``workers`` as evenly as can be: 10 over 4 -> [3, 3, 2, 2]."""
    return [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]


def work(job: WorkerJob, dataset: Dataset | None = None) -> None:
    """Run ``job.trials`` trials of the study (fewer when the deadline passes); ``dataset``: already loaded."""
    optuna = require_optuna()
    config = ExperimentConfig.from_dict(job.config)
    space = SearchSpace.of(config, job.searches)
    storage = open_storage(job.storage)
    study = optuna.load_study(
        study_name=job.study,
        storage=storage,
        sampler=make_sampler(optuna, job.seed, job.startup_trials),
        pruner=make_pruner(optuna, job.pruner, job.startup_trials, config.train.epochs),
    )
    if dataset is None:
        dataset = without_test(
            load_dataset(config.data.dataset, config.data.data_dir, progress=False, cache_dir=config.data.cache_dir, group=config.data.gauc_group)
        )
    timeout = None if job.deadline is None else max(job.deadline - time.time(), 0.0)
    if job.trials == 0 or timeout == 0.0:
        return
    label = f"worker {job.worker + 1}: " if job.workers > 1 else ""
    study.optimize(
        Objective(optuna, config, space, dataset, job.worker),
        n_trials=job.trials,
        timeout=timeout,
        catch=(UserError,),
        callbacks=[lambda study, trial: note(f"mtrec tune: {label}{trial_line(optuna, study, trial)}")],
    )


def without_test(dataset: Dataset) -> Dataset:
    """The dataset with its test split dropped before anything sees it: tuning never reads it."""
    return replace(dataset, test=None)


def trial_line(optuna: Any, study: Any, trial: Any) -> str:
    """What a finished trial did, in one line."""
    state = optuna.trial.TrialState
    attrs = trial.user_attrs
    cost = f"{epochs(attrs.get('epochs', 0))}, {attrs.get('wall_seconds', 0.0):.0f} s"
    point = settings_text(trial.params)
    if trial.state == state.COMPLETE:
        best = study.best_trial
        return f"trial {trial.number}: validation score {trial.value:.4f} ({cost}; best so far: trial {best.number}, {best.value:.4f}) {point}"
    if trial.state == state.PRUNED:
        last = max(trial.intermediate_values, default=None)
        score = f" at {trial.intermediate_values[last]:.4f}" if last is not None else ""
        return f"trial {trial.number}: pruned after epoch {attrs.get('epochs', 0)}{score} ({cost}) {point}"
    reason = attrs.get("error") or trial.system_attrs.get("fail_reason", "failed")
    return f"trial {trial.number}: failed: {str(reason).strip().splitlines()[0]} {point}"


def epochs(count: int) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _worker_main(job: WorkerJob) -> None:
    """A started worker process: a user error is one line and exit status 2, as the CLI's."""
    try:
        work(job)
    except UserError as error:
        print(f"mtrec tune: worker {job.worker + 1}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(jobs: list[WorkerJob], dataset: Dataset) -> list[int]:
    """Run ``jobs[0]`` here and the others in started processes; their exit statuses (this one's 0)."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, args=(job,), name=f"mtrec-tune-{job.worker + 1}") for job in jobs[1:]]
    for process in processes:
        process.start()
    try:
        work(jobs[0], dataset)
    finally:
        for process in processes:
            process.join()
    return [0] + [process.exitcode or 0 for process in processes]


def worker_threads(workers: int) -> int:
    """PyTorch threads per worker when several share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)
