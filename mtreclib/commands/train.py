"""``mtrec train``: train one model on one dataset and report per-task test AUC and log-loss.

Launched by torchrun (``torchrun --nproc_per_node=N -m mtreclib train ...``) it runs as one of N
data-parallel processes: it joins the process group for the run, and only rank 0 prints and
writes results.
"""

from __future__ import annotations

import argparse

from mtreclib.commands.options import add_run_flags, experiment_config
from mtreclib.core import distributed
from mtreclib.core.device import resolve_device
from mtreclib.training.experiment import format_results, run_experiment

NAME = "train"
HELP = "train one model and report per-task test AUC and log-loss"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_flags(parser)


def run(args: argparse.Namespace) -> int:
    config = experiment_config(args)
    place = distributed.place_from_environment()
    with distributed.process_group(place, place.device(resolve_device(config.run.device))):
        record = run_experiment(config, place=place)
    if place.is_main:
        print(format_results(record))
        if config.run.results:
            record.write(config.run.results)
    return 0
