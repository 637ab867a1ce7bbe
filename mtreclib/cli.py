"""The ``mtrec`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtreclib import __version__
from mtreclib.commands import (
    benchmark,
    evaluate,
    export,
    generate,
    inspect,
    models,
    predict,
    preprocess,
    report,
    strategies,
    train,
    tune,
)
from mtreclib.core.errors import UserError

# Each module has NAME, HELP, add_arguments(parser) and run(args) -> exit status.
COMMANDS = (train, tune, evaluate, predict, export, models, strategies, generate, preprocess, inspect, benchmark, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtrec",
        description="Multi-task recommendation: train, compare and use models that predict several user actions at once.",
    )
    parser.add_argument("--version", action="version", version=f"mtrec (mtreclib) {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtrec``; user mistakes print one line to stderr and exit with 2, no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UserError as error:
        print(f"mtrec: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print("mtrec: interrupted" + (f"; {error}" if str(error) else ""), file=sys.stderr)  # a run says how to resume it
        return 130
    except BrokenPipeError:  # the reader of the output went away (mtrec inspect ... | head)
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
