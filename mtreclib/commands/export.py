"""``mtrec export``: a saved model as an ONNX, TorchScript or torch.export file that returns per-task probabilities."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write a saved model for another runtime (ONNX, TorchScript, torch.export): encoded feature tensors in, per-task probabilities out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mtreclib.serving.export import FORMATS, SUFFIXES

    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (SAVE_DIR/DATASET_MODEL/run-N) or its best.pt")
    parser.add_argument("--output", required=True, metavar="FILE", help="the file to write")
    parser.add_argument(
        "--format", choices=FORMATS,
        help="onnx (needs pip install 'mtreclib[onnx]'), torchscript (traced; PyTorch deprecates TorchScript), "
        "pt2 (torch.export); default from the suffix: " + ", ".join(f"{s} {f}" for f, s in SUFFIXES.items()),
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtreclib.api import export_format
    from mtreclib.core.atomic import check_writable
    from mtreclib.core.errors import UserError
    from mtreclib.serving.export import check_format, export_model
    from mtreclib.serving.inference import load_checkpoint

    try:
        fmt = args.format or export_format(Path(args.output))
    except ValueError as error:
        raise UserError(f"--output {error}; or give --format") from None
    check_format(fmt)
    check_writable(args.output, "--output")
    inference = load_checkpoint(args.checkpoint)
    report = export_model(inference.model, args.output, fmt, name=inference.model_name)
    print(f"mtrec: exported {inference.model_name} ({inference.dataset}, epoch {inference.epoch}) to {report.describe()}")
    return 0
