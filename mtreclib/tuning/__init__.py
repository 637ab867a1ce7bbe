"""Tuning: search a model's settings on the validation split with Optuna, in a study that resumes and that
several processes (or machines) share through one database.

``config`` holds a study's own settings (trials, storage, workers, pruner); ``space`` the search
space, declared on the settings themselves and changed by a YAML file; ``storage`` opens the
database; ``study`` creates or continues a study and knows what it tunes; ``trial`` is one
trial (an ordinary training run that never touches the test split, pruned on its per-epoch
validation score); ``workers`` runs trials in one or more processes; ``summary`` reads back the
best settings and the budget; ``tuner`` puts them together. Optuna is an optional dependency
(``pip install 'mtreclib[tune]'``), imported by ``available`` only.
"""

from mtreclib.tuning.config import TuneConfig
from mtreclib.tuning.space import SearchSpace
from mtreclib.tuning.summary import StudySummary
from mtreclib.tuning.tuner import TuneResult, format_result, tune

__all__ = ["SearchSpace", "StudySummary", "TuneConfig", "TuneResult", "format_result", "tune"]
