"""Masks between two keyframes from both of them: the look-ahead of keyframe real time.

Carried forward only, a keyframe's labels drift further from the scene with every frame, and the
frame just before the next keyframe is the worst. With a look-ahead the frames between keyframes
``a`` and ``b`` wait for ``b``: its probabilities are carried back frame by frame along the
forward flows already computed on the way (``PropagationStep.pull_back``, no new flow), and each
frame ``j`` takes the blend ``(1 - w) * forward_j + w * backward_j`` with ``w = (j - a) / (b - a)``,
so each frame leans on the nearer keyframe. The price is latency: a frame is written once the
next keyframe has run, up to one interval plus one model call after it arrived.

Pure numpy on the propagators' arrays, so the real-time runner and the quality benchmark share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..exceptions import InputError


@dataclass
class HeldFrame:
    """A frame between keyframes, waiting for the next one."""

    forward: np.ndarray  # (H, W, C) probabilities carried forward from the last keyframe
    pull_back: Callable[[np.ndarray], np.ndarray]  # of the step onto this frame: its probabilities -> the frame before


def blend_between_keyframes(held: Sequence[HeldFrame], next_probs: np.ndarray,
                            next_pull_back: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """The probabilities of the held frames ``a+1 .. b-1`` (in order), from both keyframes.

    Args:
        held: the frames after keyframe ``a``, in order, each with its forward probabilities and the
            pull-back of the step that reached it.
        next_probs: keyframe ``b``'s probabilities (the model's), at the held frames' size.
        next_pull_back: the pull-back of the step onto ``b`` (carries ``b`` onto ``b - 1``).
    """
    if not held:
        return []
    span = len(held) + 1  # b - a
    for frame in held:
        if frame.forward.shape != next_probs.shape:
            raise InputError(f"held probabilities are {frame.forward.shape}, the keyframe's {next_probs.shape}; "
                             "one work size for the whole interval.")
    out: list[np.ndarray] = [np.empty(0)] * len(held)
    backward = next_pull_back(next_probs)  # at b - 1
    for offset in range(len(held) - 1, -1, -1):  # offset i is frame a + 1 + i
        w = (offset + 1) / span
        blended = (1.0 - w) * held[offset].forward + w * backward
        out[offset] = blended.astype(np.float32, copy=False)
        if offset:
            backward = held[offset].pull_back(backward)  # carry on to the frame before
    return out


__all__ = ["HeldFrame", "blend_between_keyframes"]
