"""``mtrec tune``: search a model's settings on the validation split with Optuna; the same command continues the study."""

from __future__ import annotations

import argparse

from mtreclib.commands.options import add_run_flags, file_and_flags
from mtreclib.config.flags import add_settings
from mtreclib.config.resolve import resolve
from mtreclib.tuning import TuneConfig, format_result, tune

NAME = "tune"
HELP = (
    "search a model's settings on the validation split (Optuna's TPE, pruning on per-epoch validation AUC); "
    "the same command continues the study, and several processes or machines can share it"
)
# A trial writes no files of its own, shows one line instead of bars, and resumes no run (the
# study resumes itself: the same command continues it).
RUN_ONLY = ("save_dir", "save", "results", "tensorboard", "progress", "resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, TuneConfig, "tuning (also keys of --config)")
    add_run_flags(parser, skip=RUN_ONLY)


def run(args: argparse.Namespace) -> int:
    values, sources = file_and_flags(args)
    tuning = TuneConfig.build({key: values.pop(key) for key in TuneConfig.keys() if key in values})
    config = resolve(values, sources=sources)
    result = tune(config, tuning, fixed=set(values))
    print(format_result(result))
    return 1 if any(code != 0 for code in result.exit_codes) else 0
