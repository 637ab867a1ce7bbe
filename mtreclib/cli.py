"""The ``mtrec`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

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
from mtreclib.core.errors import UserError, did_you_mean

# Each module has NAME, HELP, add_arguments(parser) and run(args) -> exit status.
COMMANDS = (train, tune, evaluate, predict, export, models, strategies, generate, preprocess, inspect, benchmark, report)


class Parser(argparse.ArgumentParser):
    """argparse without prefix abbreviations, and with a "did you mean" for a mistyped flag or command.

    An abbreviation is a silent guess (``--epoch 1`` was taken as ``--epochs 1``), and would stop
    meaning the same flag the day a longer one is added, so every flag must be typed in full.
    The subcommands' parsers are of this class too (argparse makes them of their parent's class).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            flags = [word.split("=", 1)[0] for word in extras if word.startswith("-")]
            hint = did_you_mean(flags[0], self._flags_of(parsed)) if flags else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def _flags_of(self, parsed: argparse.Namespace) -> list[str]:
        """The flags of the subcommand that was parsed (or of this parser when it has none)."""
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                parser = action.choices.get(getattr(parsed, action.dest, None), self)
        return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)  # type: ignore[misc]
        except argparse.ArgumentError as error:
            hint = did_you_mean(str(value), [str(choice) for choice in action.choices or ()])
            raise argparse.ArgumentError(action, f"{error.message}{hint}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
