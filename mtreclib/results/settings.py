"""Comparing runs' settings: which differences matter for the table, and which do not."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from mtreclib.experiment import ExperimentConfig

# Settings that change where or how visibly a run happens, not what it computes: a finished run
# is reused even if these differ (a run on another device gives the same table, up to speed).
INCIDENTAL = ("device", "save_dir", "data_dir", "train.progress", "train.checkpoint")


def comparable(config: dict[str, Any] | ExperimentConfig) -> dict[str, Any]:
    """A configuration as flat ``{"train.lr": 0.001, ...}``, without the incidental settings."""
    if isinstance(config, ExperimentConfig):
        config = json.loads(json.dumps(asdict(config), default=str))
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = value

    walk("", config)
    return {key: value for key, value in flat.items() if key not in INCIDENTAL}


def config_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first setting two flat configurations disagree on, in words; None if they agree."""
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            return f"{key} is {old.get(key)!r} there, {new.get(key)!r} now"
    return None
