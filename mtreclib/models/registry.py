"""One registry of models, used by the CLI, the benchmarks and the tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from mtreclib.core.errors import UserError, did_you_mean
from mtreclib.core.schema import FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig

_MODELS: dict[str, type[MultiTaskModel]] = {}

M = TypeVar("M", bound=type[MultiTaskModel])


class UnknownModelError(UserError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make the model buildable as ``create_model(name, schema, ...)``."""

    def decorator(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(_MODELS)


def model_class(name: str) -> type[MultiTaskModel]:
    """The class registered under ``name``."""
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}{did_you_mean(name, _MODELS)}; known models: {', '.join(_MODELS)}") from None


def model_config(name: str, **settings: Any) -> ModelConfig:
    """Model ``name``'s typed hyperparameters from keywords; an unknown key lists the known ones."""
    return model_class(name).Config.build(settings, what=f"model {name}")


def create_model(name: str, schema: FeatureSchema, config: ModelConfig | None = None, **settings: Any) -> MultiTaskModel:
    """Build the model registered under ``name`` for ``schema``.

    Hyperparameters come as a typed ``config`` (``model_class(name).Config``) or as keywords,
    e.g. ``create_model("mmoe", schema, embed_dim=16, expert_num=4)``; a key the model does not
    take is an error naming the keys it does. The settings of every model follow.
    """
    if config is not None and settings:
        config = dataclasses.replace(config, **settings)
    return model_class(name)(schema, config if config is not None else model_config(name, **settings))


def model_kwargs(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of settings shared by several models that model ``name`` takes (``expert_num``
    means nothing to AITM)."""
    keys = model_class(name).Config.keys()
    return {key: value for key, value in settings.items() if key in keys}


def model_settings(name: str) -> dict[str, Any]:
    """Model ``name``'s hyperparameters and their defaults."""
    return model_class(name).Config().to_dict()


def document_models() -> None:
    """Append every registered model's settings and defaults to ``create_model``'s docstring."""
    lines = [f"    {name}: " + ", ".join(f"{k}={v}" for k, v in model_settings(name).items()) for name in _MODELS]
    create_model.__doc__ = (create_model.__doc__ or "").rstrip() + "\n\n" + "\n".join(lines) + "\n"
