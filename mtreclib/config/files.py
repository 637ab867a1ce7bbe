"""Config files: YAML, flat (keyed by the flags' names) or in sections per concern.

    # run.yaml, flat
    model: mmoe
    epochs: 3
    embed_dim: 64

    # the same in sections
    model: {name: mmoe, embed_dim: 64}
    train: {epochs: 3}

Sections are ``data``, ``train``, ``run``, ``model`` (``name`` plus the model's settings) and
``mto`` (``name`` plus the strategy's settings); inside a section, only that concern's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtreclib.config.experiment import DataConfig, RunConfig, TrainConfig
from mtreclib.config.resolve import model_keys, normalise, strategy_keys
from mtreclib.core.settings import ConfigError, Settings, setting
from mtreclib.core.yamlfile import read_yaml

_SECTIONS = {"data": DataConfig, "train": TrainConfig, "run": RunConfig}


@dataclass(frozen=True)
class ConfigFile(Settings):
    """The config file a command reads its settings from, under the flags typed."""

    config: str | None = setting(
        None, "a YAML file of settings keyed by the flags' names (embed_dim: 64), or in sections; flags override it"
    )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's settings as flat keys (unknown keys are left for ``resolve`` to refuse)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected settings as 'key: value' lines, got {type(data).__name__}")
    flat: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in flat:
            raise ConfigError(f"{path}: {key} is set twice")
        flat[key] = value

    for raw_key, value in data.items():
        key = normalise(str(raw_key))
        if key in _SECTIONS and isinstance(value, dict):
            section = _SECTIONS[key]
            for inner, item in value.items():
                inner = normalise(str(inner))
                if inner not in section.keys():
                    raise ConfigError(f"{path}: {key}.{inner}: not a {key} setting; known: {', '.join(section.keys())}")
                put(inner, item)
        elif key in ("model", "mto") and isinstance(value, dict):
            owners = model_keys() if key == "model" else strategy_keys()
            for inner, item in value.items():
                inner = normalise(str(inner))
                if inner == "name":
                    put(key, item)
                elif inner in owners:
                    put(inner, item)
                else:
                    raise ConfigError(f"{path}: {key}.{inner}: not a {key} setting; known: name, {', '.join(owners)}")
        else:
            put(key, value)
    return flat
