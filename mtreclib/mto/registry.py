"""One registry of optimisation strategies, used by the trainer, the CLI and the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mtreclib.core.errors import UserError, did_you_mean
from mtreclib.core.settings import Settings
from mtreclib.mto.base import Strategy

_STRATEGIES: dict[str, type[Strategy]] = {}

S = TypeVar("S", bound=type[Strategy])


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: make the strategy selectable as ``--mto NAME``."""

    def decorator(cls: S) -> S:
        if name in _STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        _STRATEGIES[name] = cls
        return cls

    return decorator


def list_strategies() -> list[str]:
    return list(_STRATEGIES)


def strategy_class(name: str) -> type[Strategy]:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UserError(f"unknown multi-task optimisation strategy {name!r}{did_you_mean(name, _STRATEGIES)}; known: {', '.join(_STRATEGIES)}") from None


def create_strategy(name: str, task_num: int, config: Settings | None = None, **settings: Any) -> Strategy:
    """The strategy ``name`` for ``task_num`` tasks, with a typed ``config`` or keyword settings."""
    cls = strategy_class(name)
    if config is None:
        config = cls.Config.build(settings, what=f"strategy {name}")
    return cls(task_num, config)
