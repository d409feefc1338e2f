"""The propagation methods by name: the one place that knows every :class:`~.propagate.Propagator`.

Each method is imported when it is chosen (OpenCV for ``flow``, torchvision for ``raft``), so the
list itself is light enough for argument parsers.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import InputError
from .propagate import Propagator

METHODS: tuple[str, ...] = ("flow", "raft", "features")
LOOKAHEAD_METHODS: tuple[str, ...] = ("flow", "raft")  # their steps carry masks backwards too (pull_back)


def check_lookahead(method: str) -> None:
    """An :class:`InputError` when ``method`` cannot carry masks backwards, which ``--lookahead`` needs."""
    if method not in LOOKAHEAD_METHODS:
        raise InputError(f"--lookahead carries masks back from the next keyframe along the flow; --propagation "
                         f"{method} has none: use {' or '.join(LOOKAHEAD_METHODS)}.")


def create_propagator(method: str, model: Any = None, **kwargs: Any) -> Propagator:
    """``flow`` (no weights), ``raft`` (torchvision weights in the torch hub cache), or
    ``features`` (needs ``model``: a surgenet task model or backbone, whose features it uses)."""
    if method == "flow":
        from .flow import DISFlowPropagator
        return DISFlowPropagator(**kwargs)
    if method == "raft":
        from .raft import RAFTPropagator
        return RAFTPropagator(**kwargs)
    if method == "features":
        if model is None:
            raise InputError("--method features needs a model whose backbone gives the features: pass --model "
                             "NAME_OR_DIR (or use --method flow, which needs no weights).")
        from .affinity import FeaturePropagator
        return FeaturePropagator(model, **kwargs)
    raise InputError(f"unknown propagation method {method!r}; valid: {', '.join(METHODS)}.")
