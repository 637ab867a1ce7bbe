"""What a study found and what it cost, as plain data: for ``mtrec tune``'s last lines, the tuned
benchmark's runs and the report's plots.

``StudySummary`` is the best trial's settings and the budget (trials by state, epochs trained,
CPU and wall seconds over all trials); ``snapshot`` is every trial, enough to rebuild the study
in memory (``restore``) and draw Optuna's plots from a report folder without the database.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mtreclib.core.errors import UserError
from mtreclib.tuning.storage import shown
from mtreclib.tuning.study import identity_of

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class StudySummary:
    """A study's best settings and budget.

    Attributes:
        storage: its database URL, password hidden.
        settings: the fixed settings of its trials (``StudyIdentity.settings``).
        best_params: the best trial's searched settings, as the study stores them (a tuple as
            ``"512,256"``), which the settings read back.
        best_value: that trial's validation score; best_trial its number.
        trials: how many trials ended in each state (``complete``, ``pruned``, ``fail``, ``running``, ...).
        epochs: epochs trained over all trials; cpu_seconds, wall_seconds: their cost.
    """

    name: str
    storage: str
    model: str
    dataset: str
    mto: str
    settings: dict[str, Any]
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    trials: dict[str, int]
    epochs: int
    cpu_seconds: float
    wall_seconds: float

    @property
    def best_settings(self) -> dict[str, Any]:
        """Every flat setting of the best trial: the fixed ones with its searched ones."""
        return {**self.settings, **self.best_params}

    @property
    def data(self) -> str:
        """The dataset as its runs name it (``--dataset``: a built-in name, a folder, a spec file)."""
        return str(self.settings.get("dataset", self.dataset))

    @property
    def finished_trials(self) -> int:
        return self.trials.get("complete", 0) + self.trials.get("pruned", 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySummary:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})

    @classmethod
    def of(cls, optuna: Any, study: Any, url: str) -> StudySummary:
        """The summary of ``study``; a ``UserError`` when it has no complete trial yet."""
        identity = identity_of(study, url)
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise UserError(f"study {study.study_name!r} in {shown(url)} has no complete trial yet; run mtrec tune on it first")
        best = max(complete, key=lambda t: t.value)
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
        return cls(
            name=study.study_name,
            storage=shown(url),
            model=identity.model,
            dataset=identity.dataset,
            mto=identity.mto,
            settings=identity.settings,
            best_params=dict(best.params),
            best_value=float(best.value),
            best_trial=best.number,
            trials=counts,
            epochs=int(sum(t.user_attrs.get("epochs", 0) for t in trials)),
            cpu_seconds=float(sum(t.user_attrs.get("cpu_seconds", 0.0) for t in trials)),
            wall_seconds=float(sum(t.user_attrs.get("wall_seconds", 0.0) for t in trials)),
        )


def snapshot(optuna: Any, study: Any, summary: StudySummary) -> dict[str, Any]:
    """Every finished trial of ``study`` as JSON-ready data, with its summary."""
    trials = []
    for trial in study.get_trials(deepcopy=False):
        if not trial.state.is_finished():
            continue
        trials.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": None if trial.value is None or not math.isfinite(trial.value) else trial.value,
                "params": trial.params,
                "distributions": {key: optuna.distributions.distribution_to_json(d) for key, d in trial.distributions.items()},
                "intermediate_values": {str(step): value for step, value in trial.intermediate_values.items() if math.isfinite(value)},
                "user_attrs": {key: trial.user_attrs[key] for key in ("epochs", "cpu_seconds", "wall_seconds") if key in trial.user_attrs},
            }
        )
    return {"version": SNAPSHOT_VERSION, "summary": summary.to_dict(), "trials": trials}


def restore(optuna: Any, data: dict[str, Any]) -> Any:
    """An in-memory study holding a snapshot's trials (for Optuna's plots)."""
    study = optuna.create_study(direction="maximize", study_name=data["summary"]["name"])
    for trial in data["trials"]:
        state = optuna.trial.TrialState[trial["state"]]
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=trial["value"] if state == optuna.trial.TrialState.COMPLETE else None,
                params=trial["params"],
                distributions={key: optuna.distributions.json_to_distribution(d) for key, d in trial["distributions"].items()},
                intermediate_values={int(step): value for step, value in trial["intermediate_values"].items()},
                user_attrs=trial["user_attrs"],
            )
        )
    return study


def format_seconds(seconds: float) -> str:
    """``42 s``, ``7 min 5 s``, ``2 h 3 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
