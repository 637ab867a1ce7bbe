"""One registry of models, used by the CLI, the benchmarks and the tests."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from mtreclib.errors import UserError
from mtreclib.schema import FeatureSchema

_MODELS: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


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


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``."""
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(_MODELS)}") from None


def create_model(name: str, schema: FeatureSchema, **config: Any) -> nn.Module:
    """Build the model registered under ``name`` for ``schema`` with its keyword ``config``."""
    return model_class(name)(schema, **config)


def model_kwargs(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The entries of a shared ``config`` that model ``name`` takes (``expert_num`` means nothing to AITM)."""
    parameters = inspect.signature(model_class(name).__init__).parameters
    return {key: value for key, value in config.items() if key in parameters}
