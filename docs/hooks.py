"""MkDocs hooks: the pages that must not drift are generated at build time from the code.

``<!-- cli-reference -->`` becomes the help of every ``surgenet``, ``surgenet-train`` and
``surgenet-export`` command, read from their argparse parsers; ``<!-- zoo-table -->`` becomes the
registry's zoo table (the one the README carries, checked by a test), and
``<!-- training-data -->`` the registry's pretraining data per model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_paths() -> None:
    for path in (ROOT / "export", ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _help_block(title: str, parser: argparse.ArgumentParser, level: str) -> list[str]:
    return [f"{level} `{title}`", "", "```text", parser.format_help().rstrip(), "```", ""]


def cli_reference() -> str:
    """Markdown with the help of every command and subcommand, as argparse prints it."""
    _import_paths()
    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help to the terminal width
    from surgenet.cli import PLUGIN_HELP
    from surgenet.cli import build_parser as surgenet_parser
    from surgenet.train.cli import build_parser as train_parser
    from surgenet_export.cli import build_parser as export_parser

    lines: list[str] = []
    for command, parser in (("surgenet", surgenet_parser()), ("surgenet-train", train_parser()),
                            ("surgenet-export", export_parser())):
        lines += _help_block(command, parser, "##")
        for name, sub in _subcommands(parser):
            if command == "surgenet" and name in PLUGIN_HELP:  # its own parser follows, under its alias
                lines += [f"### `surgenet {name}`", "", f"{PLUGIN_HELP[name]}: `surgenet {name} ...` takes the "
                          f"arguments of `surgenet-{name}` below.", ""]
                continue
            lines += _help_block(f"{command} {name}", sub, "###")
    return "\n".join(lines)


def zoo_table() -> str:
    _import_paths()
    from surgenet.zoo.card_files import zoo_table_markdown

    return zoo_table_markdown()


def training_data_table() -> str:
    """What each released model was pretrained on, from the registry."""
    _import_paths()
    from surgenet.io.table import format_table
    from surgenet.zoo.registry import REGISTRY

    rows = [[f"`{e.name}`", e.pretraining_data, e.license] for e in REGISTRY.values()]
    return format_table(["model", "pretraining data", "weights licence"], rows, markdown=True)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' signature
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- zoo-table -->" in markdown:
        markdown = markdown.replace("<!-- zoo-table -->", zoo_table())
    if "<!-- training-data -->" in markdown:
        markdown = markdown.replace("<!-- training-data -->", training_data_table())
    return markdown
