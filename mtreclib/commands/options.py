"""What the commands share: the flags of a run, ``--config FILE`` and their resolution, and the
settings of several commands that no run holds (a checkpoint to read, a file to write).

Every flag of every command is generated from a typed settings class (``mtreclib.config.flags``);
a command that takes another's flag declares it with ``same``, so a flag is written once and
means one thing, with one default, everywhere.

Precedence of a run's settings, lowest first: the settings' defaults, the config file, the flags typed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtreclib.config.experiment import ExperimentConfig, RunConfig
from mtreclib.config.files import ConfigFile, read_config_file
from mtreclib.config.flags import add_experiment_flags, add_settings, given
from mtreclib.config.resolve import resolve
from mtreclib.core.settings import Settings, setting
from mtreclib.runs.checkpoint import RunDirectory


@dataclass(frozen=True)
class Shared(Settings):
    """Settings of several commands that are no run's: each command takes them with ``same``."""

    checkpoint: str = setting(None, "a run folder (SAVE_DIR/DATASET_MODEL/run-N) or its best.pt", flag="CHECKPOINT")
    output: str = setting(
        None, "the file to write, whole or not at all (a temporary name renamed when complete); its suffix names its format"
    )


def add_run_flags(parser: argparse.ArgumentParser, *, model: bool = True, skip: tuple[str, ...] = ()) -> None:
    add_settings(parser, ConfigFile)
    add_experiment_flags(parser, model=model, skip=skip)


def file_and_flags(args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings of ``--config`` overlaid by the flags typed, and where each came from.

    ``--resume RUN`` (a run folder): the run's own configuration (``RUN/config.yaml``) lies under
    both, so that no flag need be repeated; one typed that the run may not change is refused
    when the run is resumed, as before.
    """
    typed = given(args, exclude=("config", "command", *exclude))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    saved = _resumed_config(typed.get("resume"))
    if saved is not None:
        values = {key: value for key, value in read_config_file(saved).items() if key != "resume"}
        sources = {key: str(saved) for key in values}
    if getattr(args, "config", None):
        written = read_config_file(args.config)
        values.update(written)
        sources.update({key: args.config for key in written})
    for key in typed:
        sources.pop(key, None)
    values.update(typed)
    return values, sources


def _resumed_config(resume: Any) -> Path | None:
    """The saved configuration of the run folder ``--resume`` names, if it has one (``--resume``
    alone finds its run by the model and dataset, so those are given or default)."""
    if not isinstance(resume, str) or resume == RunConfig.bare_flags["resume"]:
        return None
    saved = RunDirectory(Path(resume)).config
    return saved if saved.is_file() else None


def experiment_config(args: argparse.Namespace, *, strict: bool = True, exclude: tuple[str, ...] = ()) -> ExperimentConfig:
    """The ``ExperimentConfig`` that ``--config`` and the flags describe."""
    values, sources = file_and_flags(args, exclude)
    return resolve(values, sources=sources, strict=strict)


def use_threads(threads: int | None) -> None:
    """``--threads``: PyTorch's CPU threads (None: PyTorch's choice)."""
    if threads is not None:
        torch.set_num_threads(threads)
