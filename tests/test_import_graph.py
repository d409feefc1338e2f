"""The import graph keeps its direction: the command lines sit on top, their shared helpers low.

Read from the sources (every ``import``/``from`` statement, lazy ones inside functions too), so
a new arrow the wrong way fails here whatever the tests happen to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import surgenet

PACKAGE = Path(surgenet.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    module = ".".join(("surgenet", *path.relative_to(PACKAGE).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def _sources(under: str = "") -> dict[str, set[str]]:
    root = PACKAGE / under if under else PACKAGE
    return {str(p.relative_to(PACKAGE)): _imports(p) for p in root.rglob("*.py")}


def test_nothing_below_the_command_line_imports_it():
    offenders = {src: sorted(n for n in names if n == "surgenet.cli" or n.startswith("surgenet.cli."))
                 for src, names in _sources().items()
                 if not src.startswith("cli/") and src != "__main__.py"}
    assert not {k: v for k, v in offenders.items() if v}


# `surgenet evaluate` reads the labelled dataset formats and the task scoring, which live in
# surgenet.train (extra `train`); it imports them lazily, when it runs. The one known arrow.
KNOWN_TRAIN_ARROWS = {"cli/evaluate.py": ("surgenet.evaluation.plots", "surgenet.train.task_eval")}


def test_the_surgenet_command_reaches_train_and_export_only_through_entry_points():
    offenders = {}
    for src, names in _sources("cli").items():
        allowed = KNOWN_TRAIN_ARROWS.get(src, ())
        bad = sorted(n for n in names if n.startswith(("surgenet.train", "surgenet_export"))
                     and not n.startswith(allowed or ("\0",)))
        if bad:
            offenders[src] = bad
    assert not offenders


def test_the_shared_command_line_helpers_import_no_command():
    for src, names in _sources("console").items():
        assert not [n for n in names if n.startswith(("surgenet.cli", "surgenet.train", "surgenet_export"))], src


def test_the_checker_sees_relative_and_lazy_imports():
    fake = PACKAGE / "console" / "checks.py"
    names = _imports(fake)
    assert "surgenet.exceptions" in names  # `from ..exceptions import ...`
    assert "surgenet.devices.resolve_device" in names  # imported inside a function
