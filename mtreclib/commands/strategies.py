"""``mtrec strategies``: list the multi-task optimisation strategies that --mto accepts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mtreclib.commands.models import summary
from mtreclib.config.flags import add_settings
from mtreclib.core.settings import Settings, fields_of, flag_name
from mtreclib.mto import list_strategies, strategy_class

NAME = "strategies"
HELP = "list the multi-task optimisation strategies that --mto accepts"


@dataclass(frozen=True)
class StrategiesOptions(Settings):
    """What ``mtrec strategies`` takes: nothing."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, StrategiesOptions)


def run(args: argparse.Namespace) -> int:
    for name in list_strategies():
        cls = strategy_class(name)
        settings = ", ".join(flag_name(field.name, field) for field, _ in fields_of(cls.Config))
        print(f"{name:<12} {summary(cls)}" + (f" (settings: {settings})" if settings else ""))
    return 0
