"""The ``surgenet`` command: one module per subcommand (zoo, predict, evaluate, features, track, batch, app),
plus the commands that other parts of surgenet plug in: ``surgenet train ...`` (``surgenet.train``,
also ``surgenet-train``) and ``surgenet export ...`` (``surgenet_export``, also ``surgenet-export``).

Each module has a ``register(subparsers)`` function; a module not installed yet is skipped. The
plugged-in commands are found through the ``surgenet.commands`` entry points of the installed
packages, so this core imports neither ``surgenet.train`` nor ``surgenet_export``: ``surgenet
train ARGS`` runs the entry point's ``main(ARGS)``.
Every surgenet command (``surgenet``, ``surgenet-train``, ``surgenet-export``) builds its parser
with :class:`~surgenet.console.CommandParser` and runs it with :func:`~surgenet.console.run_command`
(both in :mod:`surgenet.console`, below every command line), so a user mistake is one line on
stderr and exit code 2 wherever it is caught: by argparse or by the library.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from .._version import __version__
from ..console import CommandParser, run_command

SUBCOMMAND_MODULES = ("zoo", "predict", "evaluate", "features", "track", "batch", "app")
PLUGIN_GROUP = "surgenet.commands"
# One line each for ``surgenet --help`` (loading the plugin for its help would import torch).
PLUGIN_HELP = {
    "train": "pretraining, fine-tuning, distillation, backbone probes, frame extraction (also surgenet-train)",
    "export": "ONNX, TensorRT and int8 export, checked against PyTorch (also surgenet-export)",
}
PLUGIN_EXTRA = {"train": "train", "export": "export"}


def plugin_commands() -> dict[str, Any]:
    """The ``surgenet.commands`` entry points of the installed packages, by command name."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def build_parser(plugins: dict[str, Any] | None = None) -> argparse.ArgumentParser:
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
    for name in plugin_commands() if plugins is None else plugins:
        # Listed for --help; the arguments go to the plugin's own parser (see main).
        sub.add_parser(name, help=PLUGIN_HELP.get(name, f"the {name} commands"), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = plugin_commands()
    if argv and argv[0] in plugins:
        try:
            command = plugins[argv[0]].load()
        except ImportError as exc:  # the plugin's package is installed, an extra it needs is not
            extra = PLUGIN_EXTRA.get(argv[0], argv[0])
            print(f"surgenet: error: surgenet {argv[0]} needs {exc.name or exc}: pip install 'surgenet[{extra}]'.",
                  file=sys.stderr)
            return 2
        return int(command(argv[1:]) or 0)
    return run_command(build_parser(plugins), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
