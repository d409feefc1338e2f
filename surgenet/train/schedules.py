"""Per-step schedules (learning rate, weight decay, momentum), precomputed as arrays.

A value depends only on the global step, so resuming needs nothing but the step counter
(DINO's ``cosine_scheduler`` does the same). Pretraining and fine-tuning share one shape: a
linear warm-up, then a half cosine from the peak to a final value.
"""

from __future__ import annotations

import numpy as np


def warmup_cosine(total_steps: int, warmup_steps: int, base: float = 1.0, final: float = 0.0,
                  warmup_start: float = 0.0, warmup_ends_at_base: bool = True) -> np.ndarray:
    """One value per step: a linear warm-up from ``warmup_start`` towards ``base`` over
    ``warmup_steps``, then a half cosine from ``base`` to ``final``.

    ``warmup_ends_at_base``: DINO's warm-up reaches ``base`` on its last step (a linspace with the
    endpoint); without it the ramp stops one step short of both ends (``k / (w + 1)`` of the way
    for step ``k`` of ``w``), and the first cosine step is the peak.
    """
    warmup_steps = min(max(int(warmup_steps), 0), int(total_steps))
    if not warmup_steps:
        warmup = np.array([])
    elif warmup_ends_at_base:
        warmup = np.linspace(warmup_start, base, warmup_steps)
    else:
        warmup = warmup_start + (base - warmup_start) * np.arange(1, warmup_steps + 1) / (warmup_steps + 1)
    steps = np.arange(int(total_steps) - warmup_steps)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    return np.concatenate([warmup, cosine]).astype(np.float64)


__all__ = ["warmup_cosine"]
