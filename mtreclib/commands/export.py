"""``mtrec export``: a saved model as an ONNX, TorchScript or torch.export file that returns per-task probabilities."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mtreclib.api import export_format
from mtreclib.commands.options import Shared
from mtreclib.config.flags import add_settings, same, settings_from
from mtreclib.core.atomic import check_writable
from mtreclib.core.errors import UserError
from mtreclib.core.settings import Settings, setting
from mtreclib.serving.encoders_file import encoders_path, export_with_encoders
from mtreclib.serving.export import FORMATS, SUFFIXES, check_format
from mtreclib.serving.inference import load_checkpoint

NAME = "export"
HELP = "write a saved model for another runtime (ONNX, TorchScript, torch.export): encoded feature tensors in, per-task probabilities out"


@dataclass(frozen=True)
class ExportOptions(Settings):
    """What ``mtrec export`` takes."""

    checkpoint: str = same(Shared, "checkpoint")
    output: str = same(Shared, "output")
    format: str | None = setting(
        None,
        "onnx (needs pip install 'mtreclib[onnx]'), torchscript (traced; PyTorch deprecates TorchScript), pt2 (torch.export); "
        "none: from the output's suffix, " + ", ".join(f"{s} {f}" for f, s in SUFFIXES.items()),
        choices=FORMATS,
    )
    encoders: str | None = setting(
        None, "the encoders file written with the model (JSON, docs/serving-encoders.md); none: beside it, model.onnx -> model.encoders.json"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, ExportOptions)


def run(args: argparse.Namespace) -> int:
    options = settings_from(ExportOptions, args)
    try:
        fmt = options.format or export_format(Path(options.output))
    except ValueError as error:
        raise UserError(f"--output {error}; or give --format") from None
    check_format(fmt)
    encoders = Path(options.encoders) if options.encoders is not None else encoders_path(options.output)
    check_writable(options.output, "--output")
    check_writable(encoders, "--encoders")
    inference = load_checkpoint(options.checkpoint)
    report, written = export_with_encoders(inference, options.output, fmt, options.encoders)
    print(f"mtrec: exported {inference.model_name} ({inference.dataset}, epoch {inference.epoch}) to {report.describe()}")
    if written is not None:
        print(f"mtrec: its encoders (raw rows -> these inputs) in {written}")
    else:
        print("mtrec: no encoders file: the checkpoint's model was trained on encoded arrays, it has no encoders of raw rows")
    return 0
