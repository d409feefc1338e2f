"""Writes ``model_cards/<name>.md`` for every registry entry, and checks that they are current."""

from __future__ import annotations

from pathlib import Path

from ..io.atomic import atomic_write_text
from .registry import REGISTRY


def write_zoo_cards(out: Path, check: bool = False) -> list[str]:
    """Render one card per entry into ``out``; with ``check``, write nothing and return the stale names."""
    from .cards import render_card

    stale = []
    for name, entry in REGISTRY.items():
        path = Path(out) / f"{name}.md"
        text = render_card(entry)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            atomic_write_text(path, text)
    if check:
        known = {f"{n}.md" for n in REGISTRY}
        stale += [p.stem for p in Path(out).glob("*.md") if p.name not in known and p.name != "README.md"]
    return stale


def zoo_table_markdown(entries=None) -> str:
    """The README's zoo table, rendered from the registry (a test keeps the README in sync)."""
    from ..io.table import format_table

    rows = [[f"`{e.name}`", e.arch, f"{e.input_size[1]}x{e.input_size[2]}", f"{e.num_params / 1e6:.1f}M",
             e.pretraining_data.split(":")[0], f"[{e.filename}](https://huggingface.co/{e.repo_id})"]
            for e in (REGISTRY.values() if entries is None else entries)]
    return format_table(["name", "architecture", "input", "params", "pretraining data", "weights file"], rows,
                        markdown=True)
