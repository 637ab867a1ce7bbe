"""The settings of a study: how many trials, where they are stored, how many processes, which pruner."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mtreclib.core.settings import ConfigError, Settings, setting

PRUNERS = ("median", "hyperband", "none")
DEFAULT_STORAGE = "sqlite:///runs/tune.db"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


@dataclass(frozen=True)
class TuneConfig(Settings):
    """``mtrec tune``'s own settings; the run's settings (``mtrec train``'s) are the fixed part of every trial."""

    trials: int = setting(20, "trials this call adds to the study, shared among the workers", minimum=1)
    timeout: str | None = setting(
        None, "start no trial after this long (3600, 90m, 2h, 1h30m); a running trial finishes (default: no limit)"
    )
    study: str | None = setting(
        None, "the study's name in the storage; the same name continues it (default: DATASET_MODEL, +STRATEGY unless ew)"
    )
    storage: str = setting(
        DEFAULT_STORAGE,
        "the study's database URL: sqlite:///FILE on one machine; postgresql://... or mysql://... for workers on several machines",
    )
    workers: int = setting(1, "processes on this machine running trials of the study at once", minimum=1)
    space: str | None = setting(None, "a YAML file narrowing or replacing the declared search space (README: Tuning)")
    pruner: str = setting(
        "median",
        "stop a trial early on its per-epoch validation score: median (below the median of earlier trials at that epoch), "
        "hyperband, or none",
        choices=PRUNERS,
    )
    startup_trials: int = setting(
        5, "trials TPE samples at random before it models the results; the median pruner waits for as many", minimum=0
    )

    def check(self) -> None:
        if self.timeout is not None:
            duration_seconds(self.timeout)
        if not self.storage.strip():
            raise ConfigError("storage (--storage) must be a database URL such as sqlite:///runs/tune.db")

    @property
    def timeout_seconds(self) -> float | None:
        return None if self.timeout is None else duration_seconds(self.timeout)


def duration_seconds(text: str) -> float:
    """``"2h"`` -> 7200.0; ``"1h30m"``, ``"90m"``, ``"45s"``, ``"3600"``; a ``ConfigError`` otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"timeout (--timeout) must be a duration such as 3600, 90m, 2h or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"timeout (--timeout) must be longer than 0, got {text!r}")
    return total
