"""The ``surgenet`` command: one module per subcommand (zoo, predict, evaluate, features, track, batch, app).

Each module has a ``register(subparsers)`` function; a module not installed yet is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .._version import __version__
from ..exceptions import SurgeNetError

SUBCOMMAND_MODULES = ("zoo", "predict", "evaluate", "features", "track", "batch", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surgenet", description="SurgeNet surgical foundation models.")
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


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, set up logging (``-v``), run ``args.func``; a SurgeNetError becomes a one-line
    message and exit code 2, as for every surgenet command."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except SurgeNetError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
