"""``mtrec models``: list the registered models."""

from __future__ import annotations

import argparse

from mtreclib.models import list_models, model_class

NAME = "models"
HELP = "list the models that --model accepts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name in list_models():
        doc = (model_class(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:<14} {doc}")
    return 0
