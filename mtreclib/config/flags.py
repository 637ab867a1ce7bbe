"""Command-line flags generated from the settings classes: a new setting is a new flag, with no CLI code.

Every flag's default is "not given" (``argparse.SUPPRESS``), so that what the user typed can be
told from the defaults and laid over a config file; the defaults shown in ``--help`` are read
from the settings classes, which hold the only copy.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

from mtreclib.config.experiment import DataConfig, RunConfig, TrainConfig
from mtreclib.core.settings import Settings, describe_type, fields_of, flag_name, meta_of
from mtreclib.models import list_models, model_class
from mtreclib.mto import list_strategies, strategy_class


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _add(group: argparse._ArgumentGroup, field: dataclasses.Field, tp: Any, help_text: str) -> None:
    meta = meta_of(field)
    flag = flag_name(field.name, field)
    if tp is bool:
        inverted = flag.startswith("--no-")
        group.add_argument(flag, dest=field.name, action="store_const", const=not inverted, default=argparse.SUPPRESS, help=help_text)
        return
    metavar = None
    if meta.choices:
        metavar = "{" + ",".join(meta.choices) + "}"
    elif "list" in describe_type(tp):
        metavar = "N,N,..." if "integer" in describe_type(tp) or "number" in describe_type(tp) else "A,B,..."
    group.add_argument(flag, dest=field.name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def add_settings(parser: argparse.ArgumentParser, cls: type[Settings], title: str, *, skip: Iterable[str] = ()) -> None:
    """One flag per command-line setting of ``cls``, in a help group named ``title``."""
    group = parser.add_argument_group(title)
    for field, tp in fields_of(cls):
        if not meta_of(field).cli or field.name in skip:
            continue
        default = "" if tp is bool else f" (default: {_default_text(field.default)})"
        _add(group, field, tp, meta_of(field).help + default)


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
        if len(defaults) == 1:
            default = f"default: {defaults.pop()}"
        else:
            default = "default: " + ", ".join(f"{name} {_default_text(value)}" for name, value in owners)
        _add(group, field, tp, f"{meta_of(field).help} [{who}] ({default})")


def add_experiment_flags(parser: argparse.ArgumentParser, *, model: bool = True, skip: Iterable[str] = ()) -> None:
    """Every setting of a run as flags: data, model, training, strategy, run."""

    skip = set(skip)
    if model:
        parser.add_argument(
            "--model", default=argparse.SUPPRESS, help=f"one of {', '.join(list_models())} (default: mmoe); mtrec models lists them"
        )
    add_settings(parser, DataConfig, "data", skip=skip)
    add_component_settings(parser, {name: model_class(name) for name in list_models()}, "model settings (the models that take each are in brackets)")
    add_settings(parser, TrainConfig, "training", skip=skip)
    add_component_settings(parser, {name: strategy_class(name) for name in list_strategies()}, "multi-task optimisation settings (--mto)")
    add_settings(parser, RunConfig, "run", skip=skip)


def given(args: argparse.Namespace, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The settings the user typed, by key."""
    exclude = set(exclude)
    return {key: value for key, value in vars(args).items() if key not in exclude and not callable(value)}
