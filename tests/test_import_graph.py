"""The import graph keeps its direction: the command lines sit on top, their shared helpers low.

Read from the sources (every ``import``/``from`` statement, lazy ones inside functions too), so
a new arrow the wrong way fails here whatever the tests happen to import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

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


def _package_of(module: str) -> str | None:
    """The first level below ``surgenet`` that ``module`` belongs to (a sub-package or a top module)."""
    parts = module.split(".")
    if parts[0] != "surgenet" or len(parts) < 2:
        return None
    node = parts[1]
    return node if (PACKAGE / node).is_dir() or (PACKAGE / f"{node}.py").is_file() else None


def test_no_cycle_between_the_packages():
    graph: dict[str, set[str]] = {}
    for src, names in _sources().items():
        here = src.split("/")[0].removesuffix(".py")
        graph.setdefault(here, set()).update(
            there for there in map(_package_of, names) if there and there != here)
    # Depth-first search for a back edge; the cycle found is reported as a path.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("package-level import cycle: " + " -> ".join(cycle))


def test_the_cycle_search_finds_a_planted_cycle(monkeypatch):
    planted = {"a.py": {"surgenet.b"}, "b/x.py": {"surgenet.a.f"}}
    monkeypatch.setattr(sys.modules[__name__], "_sources", lambda under="": planted, raising=True)
    monkeypatch.setattr(sys.modules[__name__], "_package_of",
                        lambda m: m.split(".")[1] if m.startswith("surgenet.") else None)
    with pytest.raises(AssertionError, match="a -> b -> a"):
        test_no_cycle_between_the_packages()
