"""``mtrec models``: list the registered models, their papers and settings."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from mtreclib.config.flags import add_settings, settings_from
from mtreclib.core.settings import Settings, setting
from mtreclib.models import list_models, model_class, model_settings

NAME = "models"
HELP = "list the models that --model accepts, with their papers"


@dataclass(frozen=True)
class ModelsOptions(Settings):
    """What ``mtrec models`` takes."""

    settings: bool = setting(False, "also list each model's settings and their defaults")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, ModelsOptions)


def summary(cls: type) -> str:
    """The docstring's first line as plain text (no reST markup)."""
    line = (cls.__doc__ or "").strip().splitlines()[0]
    return re.sub(r"``?([^`]+)``?", r"\1", line)


def run(args: argparse.Namespace) -> int:
    options = settings_from(ModelsOptions, args)
    for name in list_models():
        cls = model_class(name)
        print(f"{name:<14} {summary(cls)}")
        if cls.paper:
            print(f"{'':<14} {cls.paper}")
        if options.settings:
            print(f"{'':<14} " + ", ".join(f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}" for key, value in model_settings(name).items()))
    return 0
