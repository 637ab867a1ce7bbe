"""A study in its storage: what it tunes (model, dataset, strategy, fixed settings), its sampler and pruner.

A study records, as its user attribute ``mtreclib``, the model, dataset and strategy it tunes and
every fixed setting of its trials, so that the same command continues it, a command with other
fixed settings is refused rather than mixed into it, and ``mtrec benchmark --tuned`` can retrain
its best trial with exactly the settings it was found with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtreclib.config.experiment import ExperimentConfig, RunConfig
from mtreclib.core.errors import UserError
from mtreclib.tuning.space import SearchSpace
from mtreclib.tuning.storage import shown

STUDY_ATTRIBUTE = "mtreclib"
# Settings that change where or how fast trials run, not what they compute: a study continues
# across them (another machine's data folder, another thread count, memory kept or released).
INCIDENTAL = ("data_dir", "threads", "release_memory")


@dataclass(frozen=True)
class StudyIdentity:
    """What a study tunes.

    Attributes:
        settings: every flat setting of its trials (``ExperimentConfig.flat`` without the run's
            own: where files go, progress), as plain data; a trial overrides the searched ones.
    """

    model: str
    dataset: str
    mto: str
    settings: dict[str, Any]

    @classmethod
    def of(cls, config: ExperimentConfig, dataset: str) -> StudyIdentity:
        flat = {key: list(value) if isinstance(value, tuple) else value for key, value in config.flat().items()}
        settings = {key: value for key, value in flat.items() if key not in RunConfig.keys() and key != "threads"}
        return cls(config.model, dataset, config.train.mto, settings)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "mto": self.mto, "settings": self.settings}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyIdentity:
        return cls(str(data["model"]), str(data["dataset"]), str(data["mto"]), dict(data["settings"]))

    def difference(self, other: StudyIdentity, ignore: set[str]) -> str | None:
        """The first thing ``other`` tunes differently, in words; None when the same."""
        for key in ("model", "dataset", "mto"):
            if getattr(self, key) != getattr(other, key):
                return f"{key} is {getattr(self, key)!r} there, {getattr(other, key)!r} now"
        skip = ignore | set(INCIDENTAL)
        for key in sorted(self.settings.keys() | other.settings.keys()):
            if key not in skip and self.settings.get(key) != other.settings.get(key):
                return f"{key} is {self.settings.get(key)!r} there, {other.settings.get(key)!r} now"
        return None


def default_name(config: ExperimentConfig, dataset: str) -> str:
    """``synthetic_mmoe``, ``synthetic_mmoe+pcgrad``."""
    name = f"{dataset}_{config.model}"
    return name if config.train.mto == "ew" else f"{name}+{config.train.mto}"


def sampler_seed(seed: int, trials_before: int, worker: int) -> int:
    """The TPE sampler's seed: from the run's seed, the trials the study already has and the worker's
    number, so that a continued study or a second worker does not draw the first one's points again."""
    return int(np.random.SeedSequence([seed, trials_before, worker]).generate_state(1)[0])


def make_sampler(optuna: Any, seed: int, startup_trials: int) -> Any:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)


def make_pruner(optuna: Any, name: str, startup_trials: int, epochs: int) -> Any:
    """``median``: stop a trial whose score at an epoch is below the median of the earlier trials' at
    that epoch (once ``startup_trials`` have finished); ``hyperband``: successive halving over
    epochs; ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


def identity_of(study: Any, url: str) -> StudyIdentity:
    """The identity a study recorded; a ``UserError`` for a study that ``mtrec tune`` did not make."""
    data = study.user_attrs.get(STUDY_ATTRIBUTE)
    if not isinstance(data, dict):
        raise UserError(f"study {study.study_name!r} in {shown(url)} was not made by mtrec tune (it has no '{STUDY_ATTRIBUTE}' attribute)")
    return StudyIdentity.from_dict(data)


def open_study(optuna: Any, storage: Any, url: str, name: str, identity: StudyIdentity, space: SearchSpace, *,
               sampler: Any, pruner: Any) -> Any:
    """The study ``name``, created (with ``identity``) or continued; a ``UserError`` when an existing
    study tunes something else, or searched a setting over another kind of range."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True)
    if STUDY_ATTRIBUTE not in study.user_attrs and not study.get_trials(deepcopy=False):
        study.set_user_attr(STUDY_ATTRIBUTE, identity.to_dict())
        return study
    existing = identity_of(study, url)
    difference = existing.difference(identity, set(space.dimensions))
    if difference is not None:
        raise UserError(f"study {name!r} in {shown(url)} tunes other settings ({difference}); continue it with its settings or name another --study")
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {name!r} in {shown(url)} minimises; mtrec tune maximises the validation score")
    check_distributions(optuna, study, space, url)
    return study


def check_distributions(optuna: Any, study: Any, space: SearchSpace, url: str) -> None:
    """Each searched setting's range is of the kind the study's trials already used (Optuna refuses
    another kind, say a list of choices after a range, or other choices)."""
    earlier: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        earlier.update(trial.distributions)
    for key, dimension in space.dimensions.items():
        if key not in earlier:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(earlier[key], dimension.distribution(optuna))
        except ValueError:
            raise UserError(
                f"study {study.study_name!r} in {shown(url)} searched {key} as {earlier[key]}, which this space's "
                f"{dimension.search.describe()} cannot continue; keep that kind of range or name another --study"
            ) from None
