"""The ``surgenet`` command: one module per subcommand (zoo, predict, evaluate, features, track, batch, app).

Each module has a ``register(subparsers)`` function; a module not installed yet is skipped.
Every surgenet command (``surgenet``, ``surgenet-train``, ``surgenet-export``) builds its parser
with :class:`CommandParser` and runs it with :func:`run_command`, so a user mistake is one line
on stderr and exit code 2 wherever it is caught: by argparse or by the library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn, Sequence

from .._version import __version__
from ..exceptions import SurgeNetError

SUBCOMMAND_MODULES = ("zoo", "predict", "evaluate", "features", "track", "batch", "app")


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``PROG: error: ...``) instead of the usage
    block, as for the errors raised later; sub-commands inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="surgenet", description="SurgeNet surgical foundation models.")
    parser.add_argument("--version", action="version", version=f"surgenet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, set up logging (``-v``), run ``args.func`` and return its exit code.

    The one runner of every surgenet command. A :class:`~surgenet.exceptions.SurgeNetError` (a
    user mistake, raised where it is found: a missing input, a device that is not there, a
    damaged checkpoint, a missing extra) becomes ``PROG: error: MESSAGE`` on stderr and exit
    code 2; Ctrl-C exits 130 without a traceback. Anything else is a bug and keeps its traceback.
    Argument errors exit 2 from ``parse_args`` (a ``SystemExit``), before any work starts.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except SurgeNetError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
