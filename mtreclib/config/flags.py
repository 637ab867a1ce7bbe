"""Command-line flags generated from the settings classes: a new setting is a new flag, with no CLI code.

Every flag's default is "not given" (``argparse.SUPPRESS``), so that what the user typed can be
told from the defaults and laid over a config file; the defaults shown in ``--help`` are read
from the settings classes, which hold the only copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from mtreclib.config.experiment import DataConfig, ModelChoice, RunConfig, TrainConfig
from mtreclib.core.settings import Settings, _optional, describe_type, fields_of, flag_name, meta_of
from mtreclib.models import list_models, model_class
from mtreclib.mto import list_strategies, strategy_class

SettingsT = TypeVar("SettingsT", bound=Settings)


# Field metadata key of a setting whose default is the training run's value (``same(..., run_default=True)``).
_RUN_DEFAULT = "mtreclib.run_default"


def same(cls: type[Settings], key: str, *, run_default: bool = False) -> Any:
    """A field that is ``cls``'s setting ``key`` again: the same flag, help, bounds and default.

    A command that shares a flag with another declares it this way, so that the flag is written
    once and means one thing with one default everywhere. ``run_default``: the command works on
    a trained run, and the setting's default is that run's value (the field defaults to None).
    """
    found = {field.name: field for field in dataclasses.fields(cls)}[key]
    if run_default:
        return dataclasses.field(default=None, metadata={**found.metadata, _RUN_DEFAULT: True})
    return dataclasses.field(default=found.default, metadata=found.metadata)


def is_run_default(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(_RUN_DEFAULT))


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _says_default(help_text: str) -> bool:
    """The help already says what the default means (``(default: all)``): a second, generated one would repeat it."""
    return "(default:" in help_text


class _Join(argparse.Action):
    """A list flag given several times: its values joined (``--id-column a --id-column b`` is ``a,b``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if before is None else f"{before},{values}")


def _add(group: argparse._ArgumentGroup, field: dataclasses.Field, tp: Any, help_text: str, *, bare: str | None = None) -> argparse.Action:
    """The flag (or positional argument) of one setting; the action remembers the field it came from."""
    meta = meta_of(field)
    flag = flag_name(field.name, field)
    inner, optional = _optional(tp)
    required = field.default is None and not optional
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
    if not flag.startswith("-"):
        # A positional argument: ``flag`` is its name in the usage line.
        action = group.add_argument(field.name, metavar=flag, nargs=None if required else "?", **kwargs)
    elif inner is bool and optional:
        action = group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, **kwargs)
    elif inner is bool:
        action = group.add_argument(flag, dest=field.name, action="store_const", const=not flag.startswith("--no-"), **kwargs)
    else:
        if meta.choices:
            kwargs["metavar"] = "{" + ",".join(meta.choices) + "}"
        elif typing.get_origin(inner) is tuple:
            words = describe_type(tp)
            kwargs["metavar"] = "N,N,..." if "integer" in words or "number" in words else "A,B,..."
            kwargs["action"] = _Join
        if bare is not None:
            kwargs.update(nargs="?", const=bare)
        action = group.add_argument(flag, dest=field.name, required=required, **kwargs)
    action.setting_field = field  # type: ignore[attr-defined] - read by the tests: every flag is generated
    return action


def add_settings(parser: argparse.ArgumentParser, cls: type[Settings], title: str | None = None, *, skip: Iterable[str] = ()) -> None:
    """One flag (or positional argument) per command-line setting of ``cls``, in a help group named ``title``.

    A setting without a default (None for a type that is not optional) is required. A tuple
    setting's flag may be given several times. A boolean ``X | None`` gets ``--X`` and ``--no-X``.
    ``cls.bare_flags`` names the value of a flag given alone (``--resume`` means ``last``).
    """
    group = parser.add_argument_group(title) if title else parser
    bare_flags = getattr(cls, "bare_flags", {})
    for field, tp in fields_of(cls):
        if not meta_of(field).cli or field.name in skip:
            continue
        _, optional = _optional(tp)
        if is_run_default(field):
            default = " (default: the training run's)"
        elif tp is bool or (field.default is None and (not optional or "none:" in meta_of(field).help)) or _says_default(meta_of(field).help):
            default = ""  # required, a switch, or a help that says what none means or what the default is
        else:
            default = f" (default: {_default_text(field.default)})"
        _add(group, field, tp, meta_of(field).help + default, bare=bare_flags.get(field.name))


def settings_from(cls: type[SettingsT], args: argparse.Namespace) -> SettingsT:
    """The ``cls`` of the parsed flags (its defaults where none was typed), checked."""
    keys = cls.keys()
    return cls.build({key: value for key, value in vars(args).items() if key in keys})  # type: ignore[return-value]


def add_component_settings(parser: argparse.ArgumentParser, classes: dict[str, type], title: str) -> None:
    """One flag per setting of any of ``classes`` (name -> class with ``Config``), saying which take it."""
    group = parser.add_argument_group(title)
    seen: dict[str, tuple[dataclasses.Field, Any, list[tuple[str, Any]]]] = {}
    for name, cls in classes.items():
        for field, tp in fields_of(cls.Config):
            if not meta_of(field).cli:
                continue
            entry = seen.setdefault(field.name, (field, tp, []))
            entry[2].append((name, field.default))
    for key, (field, tp, owners) in seen.items():
        defaults = {_default_text(default) for _, default in owners}
        names = [name for name, _ in owners]
        who = "all" if len(names) == len(classes) else ", ".join(names)
        if _says_default(meta_of(field).help):
            default = ""  # the help says its default in its own words
        elif len(defaults) == 1:
            default = f" (default: {defaults.pop()})"
        else:
            default = " (default: " + ", ".join(f"{name} {_default_text(value)}" for name, value in owners) + ")"
        _add(group, field, tp, f"{meta_of(field).help} [{who}]{default}")


def add_experiment_flags(parser: argparse.ArgumentParser, *, model: bool = True, skip: Iterable[str] = ()) -> None:
    """Every setting of a run as flags: data, model, training, strategy, run."""

    skip = set(skip)
    if model:
        add_settings(parser, ModelChoice, "model")
    add_settings(parser, DataConfig, "data", skip=skip)
    add_component_settings(parser, {name: model_class(name) for name in list_models()}, "model settings (the models that take each are in brackets)")
    add_settings(parser, TrainConfig, "training", skip=skip)
    add_component_settings(parser, {name: strategy_class(name) for name in list_strategies()}, "multi-task optimisation settings (--mto)")
    add_settings(parser, RunConfig, "run", skip=skip)


def given(args: argparse.Namespace, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The settings the user typed, by key."""
    exclude = set(exclude)
    return {key: value for key, value in vars(args).items() if key not in exclude and not callable(value)}
