"""The keyframe interval of real-time keyframe mode: how often the model must run to keep up.

Pure arithmetic (no torch), so the command line can show the defaults without loading a model.
"""

from __future__ import annotations

import math

from ..exceptions import InputError

DEFAULT_MAX_INTERVAL = 8
DEFAULT_HEADROOM = 0.85  # share of a frame period the main thread may use; the reader and writer need the rest


def next_interval(model_ms: float, propagate_ms: float, period_ms: float, max_interval: int,
                  headroom: float = DEFAULT_HEADROOM, backlog: int = 0, current: int = 1) -> int:
    """The smallest keyframe interval whose mean cost per frame fits ``headroom * period_ms``.

    ``(m + (N - 1) p) / N <= B``  gives  ``N >= (m - p) / (B - p)``; when propagation alone does
    not fit (``p >= B``) no interval does and the largest is taken. Frames already waiting
    (``backlog`` more than the current interval) mean the last choice was too small: one more.
    The result is in ``[1, max_interval]``.
    """
    if max_interval < 1:
        raise InputError(f"the largest keyframe interval must be >= 1, got {max_interval}.")
    budget = headroom * period_ms
    if model_ms <= budget:
        wanted = 1
    elif propagate_ms >= budget:
        wanted = max_interval
    else:
        wanted = math.ceil((model_ms - propagate_ms) / (budget - propagate_ms) - 1e-9)
    if backlog > current:
        wanted = max(wanted, current + 1)
    return int(min(max(wanted, 1), max_interval))
