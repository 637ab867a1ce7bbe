"""Comparing runs' settings: which differences matter for the table, and which do not."""

from __future__ import annotations

from typing import Any

from mtreclib.config.experiment import ExperimentConfig

# Settings that change where or how visibly a run happens, not what it computes: a finished run
# is reused even if these differ (a run on another device gives the same table, up to speed).
INCIDENTAL = ("data.data_dir", "train.threads")
INCIDENTAL_SECTIONS = ("run.",)


def comparable(config: dict[str, Any] | ExperimentConfig) -> dict[str, Any]:
    """A configuration as flat ``{"train.lr": 0.001, ...}``, without the incidental settings."""
    if isinstance(config, ExperimentConfig):
        config = config.to_dict()
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = value

    walk("", config)
    return {key: value for key, value in flat.items() if key not in INCIDENTAL and not key.startswith(INCIDENTAL_SECTIONS)}


def config_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first setting two flat configurations disagree on, in words; None if they agree."""
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            return f"{key} is {old.get(key)!r} there, {new.get(key)!r} now"
    return None
