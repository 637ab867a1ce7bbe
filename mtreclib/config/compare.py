"""Comparing two runs' configurations: the one comparison that resuming and results tables share.

Which settings may differ is a marker on each setting (``Meta.may_differ``, see
``mtreclib.config.experiment``): a resumed run may change how long it trains and where it runs;
the runs of one results table may differ only in where and how visibly they ran.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mtreclib.config.experiment import DataConfig, ExperimentConfig, RunConfig, TrainConfig
from mtreclib.core.settings import meta_of

# The sections of ``ExperimentConfig.to_dict`` whose settings carry markers; the model's and the
# strategy's settings always count.
_MARKED = {"data": DataConfig, "train": TrainConfig, "run": RunConfig}


def _flat(config: dict[str, Any] | ExperimentConfig) -> dict[str, Any]:
    """``ExperimentConfig.to_dict()`` as ``{"train.lr": 0.001, ...}``."""
    nested = config.to_dict() if isinstance(config, ExperimentConfig) else config
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = value

    walk("", nested)
    return flat


def may_differ(key: str, context: str) -> bool:
    """Whether the setting of flat key ``key`` (``"train.threads"``) may differ in ``context``."""
    section, _, name = key.partition(".")
    cls = _MARKED.get(section)
    if cls is None:
        return False
    fields = {field.name: field for field in dataclasses.fields(cls)}
    return name in fields and context in meta_of(fields[name]).may_differ


def comparable(config: dict[str, Any] | ExperimentConfig, context: str) -> dict[str, Any]:
    """A configuration as flat keys, without the settings that may differ in ``context``."""
    return {key: value for key, value in _flat(config).items() if not may_differ(key, context)}


def differences(old: dict[str, Any] | ExperimentConfig, new: dict[str, Any] | ExperimentConfig, context: str) -> list[str]:
    """The settings ``old`` and ``new`` disagree on that may not differ in ``context``, in words."""
    a, b = comparable(old, context), comparable(new, context)
    return [f"{key} was {a.get(key)!r}, now {b.get(key)!r}" for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]
