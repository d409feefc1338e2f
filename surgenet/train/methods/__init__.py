"""Self-supervised methods as plugins of one engine (:mod:`surgenet.train.pretrain`).

Each module defines one :class:`~surgenet.train.methods.base.PretrainMethod`: its networks and
heads, its views, its loss and its EMA target where it has one. The engine owns the rest (data,
DDP, schedules, exact resume, logs, export).
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from ...exceptions import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .base import PretrainMethod

METHODS = ("dino", "byol", "simclr", "msn")


def method_class(name: str) -> type[PretrainMethod]:
    """The plugin class of ``name``; an unknown name is an InputError naming the valid ones."""
    if name not in METHODS:
        close = difflib.get_close_matches(str(name).lower(), METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown pretraining method {name!r}.{hint} Use one of: {', '.join(METHODS)}.")
    return importlib.import_module(f".{name}", __name__).METHOD


__all__ = ["METHODS", "method_class"]
