"""``mtrec strategies``: list the multi-task optimisation strategies that --mto accepts."""

from __future__ import annotations

import argparse

from mtreclib.commands.models import summary
from mtreclib.mto import list_strategies, strategy_class

NAME = "strategies"
HELP = "list the multi-task optimisation strategies that --mto accepts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name in list_strategies():
        cls = strategy_class(name)
        settings = ", ".join(f"--{key.replace('_', '-')}" for key in cls.Config.keys())
        print(f"{name:<12} {summary(cls)}" + (f" (settings: {settings})" if settings else ""))
    return 0
