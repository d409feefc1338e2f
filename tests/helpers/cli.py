"""Running the ``surgenet`` command in the test process and reading its exit code."""

from __future__ import annotations

from typing import Sequence


def exit_code(argv: Sequence[str]) -> int:
    """``surgenet ARGV``'s exit code, whether it returns one or exits through argparse (code 2)."""
    from surgenet.cli import main

    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code)
