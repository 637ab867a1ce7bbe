"""One trial: the fixed settings with a point of the space, trained by the ordinary run, scored on validation.

The trial is ``run_experiment`` with ``test=False``: the same data, model, strategy and trainer as
``mtrec train``, with the test split never touched. Its value is the validation score the
trainer selects epochs on (mean AUC over the tasks, or mean GAUC under ``--select-metric gauc``;
``trainer.validation_score``) at the epoch it keeps; after every epoch that score goes to the
pruner, which may stop the trial there.
Each trial records what it cost (epochs, CPU and wall seconds) as user attributes: the study's
budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core.errors import UserError
from mtreclib.data.datasets import Dataset
from mtreclib.training.experiment import run_experiment
from mtreclib.tuning.space import SearchSpace, encode


class Objective:
    """Optuna's objective: ``objective(trial) -> validation score``.

    Args:
        base: the fixed settings (quiet, no checkpoint files).
        space: what is searched.
        dataset: the data, loaded once per worker, without its test split.
        worker: the worker running the trials (recorded with each).
    """

    def __init__(self, optuna: Any, base: ExperimentConfig, space: SearchSpace, dataset: Dataset, worker: int = 0):
        self.optuna = optuna
        self.base = base
        self.space = space
        self.dataset = dataset
        self.worker = worker

    def __call__(self, trial: Any) -> float:
        trial.set_user_attr("worker", self.worker)
        values = self.space.sample(trial)
        try:
            config = with_changes(self.base, **values)
        except UserError as error:  # settings that cannot go together: this trial fails, the study goes on
            trial.set_user_attr("error", str(error))
            raise
        cost = {"epochs": 0}
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        try:
            record = run_experiment(config, dataset=self.dataset, announce=False, epoch_end=[self._pruning(trial, cost)], test=False)
        finally:
            trial.set_user_attr("epochs", cost["epochs"])
            trial.set_user_attr("cpu_seconds", time.process_time() - start_cpu)
            trial.set_user_attr("wall_seconds", time.perf_counter() - start_wall)
        best = record.history[record.best_epoch - 1]
        trial.set_user_attr("best_epoch", record.best_epoch)
        trial.set_user_attr("valid", {task: m.to_dict() for task, m in record.tasks.items()})
        return float(best.valid_score)

    def _pruning(self, trial: Any, cost: dict[str, int]) -> Callable[[dict], None]:
        """The per-epoch callback: report the validation score, stop the trial when the pruner says so."""

        def report(record: dict) -> None:
            epoch, score = record["epoch"], record["valid_score"]
            cost["epochs"] = epoch
            trial.report(float(score), epoch)
            # After the last epoch there is nothing left to save: the trial completes.
            if epoch < self.base.train.epochs and trial.should_prune():
                raise self.optuna.TrialPruned(f"validation score {score:.4f} after epoch {epoch}")

        return report


def settings_text(params: dict[str, Any]) -> str:
    """``lr=0.0012, expert_num=6``: a trial's point, short."""
    parts = []
    for key, value in params.items():
        value = encode(value)
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts)
