"""What the commands that configure a run share: the flags, ``--config FILE``, and their resolution.

Precedence, lowest first: the settings' defaults, the config file, the flags typed.
"""

from __future__ import annotations

import argparse
from typing import Any

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.config.files import read_config_file
from mtreclib.config.flags import add_experiment_flags, given
from mtreclib.config.resolve import resolve


def add_run_flags(parser: argparse.ArgumentParser, *, model: bool = True, skip: tuple[str, ...] = ()) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML file of settings keyed by the flags' names (embed_dim: 64), or in sections; flags override it",
    )
    add_experiment_flags(parser, model=model, skip=skip)


def file_and_flags(args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings of ``--config`` overlaid by the flags typed, and where each came from."""
    typed = given(args, exclude=("config", "command", *exclude))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if getattr(args, "config", None):
        values = read_config_file(args.config)
        sources = {key: args.config for key in values}
    for key in typed:
        sources.pop(key, None)
    values.update(typed)
    return values, sources


def experiment_config(args: argparse.Namespace, *, strict: bool = True, exclude: tuple[str, ...] = ()) -> ExperimentConfig:
    """The ``ExperimentConfig`` that ``--config`` and the flags describe."""
    values, sources = file_and_flags(args, exclude)
    return resolve(values, sources=sources, strict=strict)
