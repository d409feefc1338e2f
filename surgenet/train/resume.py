"""Whether ``--resume`` may continue a saved run with the settings given now.

A run saves its config next to its state (``"config"`` in ``last.pth`` / ``checkpoint.pth``).
Resuming with another model, task, number of classes or image size would otherwise fail deep in
``load_state_dict`` with a size-mismatch traceback, or silently train something else; this check
runs before any model or data is built and names every setting that differs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from ..exceptions import InputError
from .config import to_dict

__all__ = ["check_resumed_settings"]

# Shown at most; the rest are counted.
_SHOWN = 8


def _settings(config: Mapping[str, Any], sections: set[str]) -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` as ``{"train.epochs": 3}`` for each section; other values as they are."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in sections and isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def check_resumed_settings(saved: Mapping[str, Any], current: Any, may_change: Iterable[str],
                           fix: str = "use a new --out, or pass the old values") -> None:
    """Raise an :class:`InputError` naming each setting of ``current`` that differs from ``saved``.

    ``saved`` is the config the run stored (``to_dict`` of its dataclass), ``current`` the config
    dataclass of this run; a field that is itself a dataclass (a section of a pretraining config)
    is compared key by key as ``section.key``. ``may_change`` names the settings a resumed run may
    change (schedule length, workers, device, ...); a name ending in ``.`` allows a whole section.
    A setting the saved run did not record (written by an older version) is not compared.
    """
    sections = {f.name for f in dataclasses.fields(current) if dataclasses.is_dataclass(getattr(current, f.name))}
    allowed = tuple(may_change)
    exact = {name for name in allowed if not name.endswith(".")}
    prefixes = tuple(name for name in allowed if name.endswith("."))
    old, new = _settings(saved, sections), _settings(to_dict(current), sections)
    changed = sorted(k for k in old if k in new and k not in exact and not k.startswith(prefixes)
                     and old[k] != new[k])
    if not changed:
        return
    details = "; ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed[:_SHOWN])
    more = f" (and {len(changed) - _SHOWN} more)" if len(changed) > _SHOWN else ""
    raise InputError(f"--resume continues the saved run, but these settings differ from it: {details}{more}; "
                     f"{fix}.")
