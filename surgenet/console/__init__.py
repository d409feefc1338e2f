"""What every surgenet command line shares, below the commands themselves.

:class:`CommandParser` (argument errors in one line), :func:`run_command` (the one runner: a
user's mistake becomes one line on stderr and exit code 2), :mod:`.checks` (argument types that
check a value when it is parsed); tables for the terminal and Markdown are
:mod:`surgenet.io.table`, lower still, since the zoo renders its cards' tables too. The
``surgenet`` command (:mod:`surgenet.cli`), ``surgenet.train``'s and ``surgenet_export``'s command
lines and the benchmarks build on it; it imports none of them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Sequence

from ..exceptions import SurgeNetError


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``PROG: error: ...``) instead of the usage
    block, as for the errors raised later; sub-commands inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


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


__all__ = ["CommandParser", "run_command"]
