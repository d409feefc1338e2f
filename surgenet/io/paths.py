"""Output names from user input (manifest ids, file and folder names), kept inside the output folder.

A name that comes from a user's file (``../x``, ``/etc/y``, ``...mp4`` whose stem is ``..``, a
symlink) must never make a writer land outside ``--out``: :func:`safe_name` turns any text into
one harmless file-name component, :func:`unique_names` keeps two inputs that sanitise alike
apart, and :func:`inside` is the check every such writer makes before it writes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable

from ..exceptions import InputError

MAX_NAME = 120  # characters of a name; far below the 255 bytes of common file systems


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_name(text: str, fallback: str = "input") -> str:
    """``text`` as one file-name component: path separators become ``__``, anything but letters,
    digits, ``.``, ``_`` and ``-`` becomes ``_``, leading/trailing dots and underscores go (no
    ``..``, no hidden files). An ordinary name (``video01``) is kept as it is."""
    text = str(text).replace("\\", "/").strip("/")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "__")).strip("._")
    if not cleaned:
        return fallback
    if len(cleaned) > MAX_NAME:  # shortened, and kept apart from other long names that start alike
        cleaned = f"{cleaned[:MAX_NAME - 9]}-{_digest(text)}"
    return cleaned


def unique_names(texts: Iterable[str], fallback: str = "input") -> list[str]:
    """:func:`safe_name` of each text; where different texts sanitise alike (``a b`` and ``a_b``,
    ``../x`` and ``x``), those whose text was changed get a short digest of it, so neither
    overwrites the other. Identical texts keep one name (the caller decides if that is a mistake)."""
    texts = [str(t) for t in texts]
    names = [safe_name(t, fallback) for t in texts]
    owners: dict[str, set[str]] = {}
    for text, name in zip(texts, names):
        owners.setdefault(name, set()).add(text)
    result = []
    for text, name in zip(texts, names):
        if len(owners[name]) > 1 and text != name:
            name = f"{name}-{_digest(text)}"
        result.append(name)
    return result


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, if it lies inside ``root``; else an
    InputError. Symlinks are followed, so a link that points outside is refused too."""
    root_resolved = Path(root).expanduser().resolve()
    target = Path(path) if Path(path).is_absolute() else Path(root) / path
    resolved = target.expanduser().resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise InputError(f"{target} would be written outside the output folder {root}; refusing (a name with "
                         "'..', an absolute path or a symlink that leaves it).")
    return target


__all__ = ["MAX_NAME", "inside", "safe_name", "unique_names"]
