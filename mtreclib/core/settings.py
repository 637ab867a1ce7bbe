"""Settings: one dataclass field per value, with its type, default, help and bounds, checked once.

A configuration class is a frozen dataclass deriving from ``Settings`` whose fields are made by
``setting(default, help, ...)``. Building one coerces every value to its declared type (the
command line gives text, YAML gives lists and numbers) and checks its bounds, so a value is
validated in exactly one place: where it is defined. Mistakes raise ``ConfigError`` naming the
key and its flag, e.g. ``embed_dim (--embed-dim) must be at least 1, got 0``.

Supported types: ``int``, ``float``, ``str``, ``bool``, tuples of those (``tuple[int, ...]``,
given as ``128,64`` on the command line or a YAML list), and ``X | None``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mtreclib.core.errors import UserError

_META = "mtreclib"


class ConfigError(UserError):
    """A configuration value or key that cannot be used."""


@dataclass(frozen=True)
class Meta:
    """What a setting says about itself.

    Attributes:
        help: one line for ``--help`` and the README.
        minimum, maximum: inclusive bounds for numbers (and each member of a tuple).
        below: exclusive upper bound.
        above: exclusive lower bound.
        choices: the allowed values of a string.
        flag: the command-line flag when it is not ``--`` plus the key with dashes
            (``--no-progress`` for ``progress``; a boolean whose flag starts with ``--no-``
            sets False).
        cli: whether the setting is a command-line flag at all.
        nonempty: a tuple must have at least one member.
        may_differ: where a value may differ from another run's without changing what is
            computed: ``"resume"`` (a resumed run may change it), ``"table"`` (the runs of one
            results table may differ in it). Where and how visibly a run happens has both; how
            long it trains has ``"resume"`` only.
        search: where ``mtrec tune`` looks for a good value (``search_range``,
            ``search_choices``); None: the setting keeps its value while tuning.
    """

    help: str
    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    cli: bool = True
    nonempty: bool = False
    may_differ: tuple[str, ...] = ()
    search: Search | None = None


@dataclass(frozen=True)
class Search:
    """A setting's search space: a numeric range, or a list of values to choose from.

    Declared once with the setting (``setting(1e-3, "...", search=search_range(1e-4, 1e-2, log=True))``),
    so that every model and strategy can be tuned without code in the tuner.

    Attributes:
        low, high: the inclusive ends of a range (integers for an ``int`` setting).
        log: sample uniformly on a log scale (learning rates, weights spanning decades).
        step: the spacing of the values of a range (``2``: even expert numbers); None: any.
        choices: the values to choose from, each a valid value of the setting (a tuple setting
            takes tuples: ``((256, 128), (512, 256))``).
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def values(self) -> tuple[Any, ...]:
        """The values that bound the space: a range's ends, or every choice."""
        return self.choices if self.choices is not None else (self.low, self.high)

    def describe(self) -> str:
        """``1e-05..0.01 (log)``, ``2..16 step 2``, ``one of 16, 32, 64``."""
        if self.choices is not None:
            return "one of " + ", ".join(_text(choice) for choice in self.choices)
        text = f"{_text(self.low)}..{_text(self.high)}"
        if self.step is not None:
            text += f" step {_text(self.step)}"
        return text + (" (log)" if self.log else "")


def search_range(low: float, high: float, *, log: bool = False, step: float | None = None) -> Search:
    """A range from ``low`` to ``high``, both included; ``log``: uniform on a log scale."""
    if not low < high:
        raise ValueError(f"a search range needs low < high, got {low}..{high}")
    if log and low <= 0:
        raise ValueError(f"a log-scale search range needs low > 0, got {low}")
    return Search(low=low, high=high, log=log, step=step)


def search_choices(*choices: Any) -> Search:
    """One of ``choices``."""
    if not choices:
        raise ValueError("search_choices needs at least one value")
    return Search(choices=tuple(choices))


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(str(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - mirrors argparse's keyword
    """A dataclass field with ``Meta``; ``default`` may be a tuple (immutable, shared safely)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("setting defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata={_META: Meta(help=help, **meta)})


def meta_of(field: dataclasses.Field) -> Meta:
    return field.metadata.get(_META) or Meta(help="")


def flag_name(key: str, field: dataclasses.Field | None = None) -> str:
    """The command-line flag of ``key``: ``embed_dim`` -> ``--embed-dim``."""
    meta = meta_of(field) if field is not None else None
    if meta is not None and meta.flag:
        return meta.flag
    return "--" + key.replace("_", "-")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(tp)) == 2:
            return members[0], True
    return tp, False


def describe_type(tp: Any) -> str:
    """Words for a type, for error messages and help."""
    inner, optional = _optional(tp)
    if typing.get_origin(inner) is tuple:
        member = typing.get_args(inner)[0]
        text = f"a comma-separated list of {describe_type(member)}s"
    else:
        text = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(inner, str(inner))
    return text + (" or none" if optional else "")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp``; a ``ConfigError`` naming ``where`` when it cannot be."""
    inner, optional = _optional(tp)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where} must be {describe_type(tp)}, got nothing")
    if typing.get_origin(inner) is tuple:
        member = typing.get_args(inner)[0]
        if isinstance(value, str):
            items: Sequence[Any] = [v for v in (part.strip() for part in value.split(",")) if v != ""]
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            items = [value]
        return tuple(coerce(item, member, where) for item in items)
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if inner is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if inner is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if inner is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    raise TypeError(f"unsupported setting type {tp!r} at {where}")


def _check_bounds(value: Any, meta: Meta, where: str) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and meta.nonempty and not value:
        raise ConfigError(f"{where} must name at least one value")
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{where} must be a number, got nan")
        if meta.minimum is not None and v < meta.minimum:
            raise ConfigError(f"{where} must be at least {_num(meta.minimum)}, got {v}")
        if meta.maximum is not None and v > meta.maximum:
            raise ConfigError(f"{where} must be at most {_num(meta.maximum)}, got {v}")
        if meta.above is not None and v <= meta.above:
            raise ConfigError(f"{where} must be above {_num(meta.above)}, got {v}")
        if meta.below is not None and v >= meta.below:
            raise ConfigError(f"{where} must be below {_num(meta.below)}, got {v}")
        if meta.choices is not None and v not in meta.choices:
            raise ConfigError(f"{where} must be one of {', '.join(meta.choices)}, got {v!r}")


def checked(value: Any, field: dataclasses.Field, tp: Any, where: str) -> Any:
    """``value`` as the setting ``field`` of type ``tp`` takes it, within its bounds; ``ConfigError`` naming ``where`` if not."""
    value = coerce(value, tp, where)
    _check_bounds(value, meta_of(field), where)
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class Settings:
    """Base of every configuration dataclass: coerces and checks its fields once, when built.

    Subclasses are ``@dataclass(frozen=True)`` with fields made by ``setting``; ``check`` may add
    checks that involve several fields. ``flags = False`` for settings that are never flags
    (a dataset spec's entries): errors then name the key alone.
    """

    flags: ClassVar[bool] = True

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            where = f"{field.name} ({flag_name(field.name, field)})" if self.flags else field.name
            value = checked(getattr(self, field.name), field, hints[field.name], where)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields; raise ``ConfigError``."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def build(cls, values: dict[str, Any], *, what: str = "") -> Settings:
        """An instance from ``values``; an unknown key is an error listing the known ones."""
        unknown = [key for key in values if key not in cls.keys()]
        if unknown:
            close = _close_matches(unknown[0], cls.keys())
            hint = f" (did you mean {close}?)" if close else ""
            where = f" for {what}" if what else ""
            raise ConfigError(f"unknown setting {unknown[0]!r}{where}{hint}; known: {', '.join(cls.keys())}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: tuples become lists (JSON and YAML ready)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in vars(self).items()}


def _close_matches(word: str, candidates: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word.replace("-", "_"), list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of a settings class, in declaration order."""
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]
