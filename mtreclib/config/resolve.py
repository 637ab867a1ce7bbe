"""Flat settings (from a config file and the command line) to a typed ``ExperimentConfig``.

Every setting has one flat key, the same in flags (``--embed-dim``), config files (``embed_dim``
or ``embed-dim``) and ``ExperimentConfig.replace``. A key belongs to exactly one concern: the
data, training and run settings, the model's settings (the union over registered models) and the
strategy's (the union over registered strategies); a test checks that no key is claimed twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mtreclib.config.experiment import DataConfig, ExperimentConfig, RunConfig, TrainConfig
from mtreclib.core.settings import ConfigError, Settings, _close_matches, coerce, meta_of
from mtreclib.models import list_models, model_class
from mtreclib.mto import list_strategies, strategy_class

SECTIONS: tuple[type[Settings], ...] = (DataConfig, TrainConfig, RunConfig)


def model_keys() -> dict[str, list[str]]:
    """Each model setting's key -> the models that take it."""

    keys: dict[str, list[str]] = {}
    for name in list_models():
        for key in model_class(name).Config.keys():
            keys.setdefault(key, []).append(name)
    return keys


def strategy_keys() -> dict[str, list[str]]:
    """Each strategy setting's key -> the strategies that take it."""

    keys: dict[str, list[str]] = {}
    for name in list_strategies():
        for key in strategy_class(name).Config.keys():
            keys.setdefault(key, []).append(name)
    return keys


def known_keys() -> list[str]:
    keys = ["model"]
    for section in SECTIONS:
        keys += section.keys()
    return keys + list(model_keys()) + list(strategy_keys())


def normalise(key: str) -> str:
    """``embed-dim``, ``--embed-dim`` and ``embed_dim`` are the same key."""
    return key.lstrip("-").replace("-", "_")


def inverted_flags() -> dict[str, str]:
    """Keys named after a ``--no-X`` flag (``no_progress``) -> the setting they negate (``progress``)."""


    found = {}
    for section in SECTIONS:
        for field in dataclasses.fields(section):
            flag = meta_of(field).flag
            if flag and flag.startswith("--no-"):
                found[normalise(flag)] = field.name
    return found


def _uninvert(values: dict[str, Any]) -> dict[str, Any]:
    """``no_progress: true`` (a flag's name in a config file) as ``progress: false``."""

    inverted = inverted_flags()
    result = {}
    for key, value in values.items():
        if key in inverted:
            result[inverted[key]] = not coerce(value, bool, key)
        else:
            result[key] = value
    return result


def resolve(values: dict[str, Any], *, sources: dict[str, str] | None = None, strict: bool = True) -> ExperimentConfig:
    """The ``ExperimentConfig`` of flat ``values`` over the defaults.

    ``sources`` names where a key's value came from (a config file), so that an error about it
    says so. ``strict``: a model or strategy setting the chosen model or strategy does not take
    is an error (``mtrec train``); otherwise it is dropped (``mtrec benchmark`` and
    ``ExperimentConfig.replace`` apply shared settings to the models that take them).
    """
    values = _uninvert({normalise(key): value for key, value in values.items()})
    inverted = inverted_flags()
    sources = {inverted.get(normalise(key), normalise(key)): where for key, where in (sources or {}).items()}
    try:
        return _resolve(values, strict)
    except ConfigError as error:
        text = str(error)
        for key, where in sources.items():
            if text.startswith(f"{key} (") or f"setting {key!r}" in text:
                raise ConfigError(f"{where}: {text}") from None
        raise


def _resolve(values: dict[str, Any], strict: bool) -> ExperimentConfig:
    by_model, by_strategy = model_keys(), strategy_keys()
    claimed = {"model"} | set(by_model) | set(by_strategy)
    sections = {}
    for section in SECTIONS:
        claimed |= set(section.keys())
        sections[section] = section.build({k: v for k, v in values.items() if k in section.keys()})
    unknown = [key for key in values if key not in claimed]
    if unknown:
        close = _close_matches(unknown[0], known_keys())
        hint = f" (did you mean {close}?)" if close else ""
        raise ConfigError(f"unknown setting {unknown[0]!r}{hint}; known: {', '.join(known_keys())}")

    model = str(values.get("model", ExperimentConfig.model))
    model_cls = model_class(model)
    model_values = _owned(values, by_model, model_cls.Config.keys(), f"model {model}", strict)
    train = sections[TrainConfig]
    strategy_cls = strategy_class(train.mto)
    strategy_values = _owned(values, by_strategy, strategy_cls.Config.keys(), f"strategy {train.mto}", strict)
    return ExperimentConfig(
        model=model,
        model_config=model_cls.Config.build(model_values, what=f"model {model}"),
        data=sections[DataConfig],
        train=train,
        run=sections[RunConfig],
        mto_config=strategy_cls.Config.build(strategy_values, what=f"strategy {train.mto}"),
    )


def _owned(values: dict[str, Any], owners: dict[str, list[str]], accepted: tuple[str, ...], what: str, strict: bool) -> dict[str, Any]:
    """The values among ``owners``' keys that ``what`` accepts; in strict mode the others are errors."""
    taken = {}
    for key, value in values.items():
        if key not in owners:
            continue
        if key in accepted:
            taken[key] = value
        elif strict:
            raise ConfigError(
                f"{what} has no setting {key!r} (it is a setting of {', '.join(owners[key])}); "
                f"{what} takes: {', '.join(accepted) or 'none'}"
            )
    return taken


def with_changes(config: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A copy of ``config`` with settings changed by flat key (``epochs=3``, ``embed_dim=16``, ``model="ple"``).

    Model and strategy settings carry over to another model or strategy where it takes
    them, and are dropped where it does not (``expert_num`` means nothing to AITM).
    """
    return resolve({**config.flat(), **changes}, strict=False)
