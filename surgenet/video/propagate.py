"""One interface for carrying a segmentation from frame to frame, whatever moves it.

A :class:`Propagator` holds the last frame and its per-class probabilities ``(H, W, C)``
(channels last, as OpenCV stores images). ``step(frame)`` carries them onto the next frame and
says how much it trusts the result; ``correct(probs)`` replaces the state after a fresh
prediction (keyframes). Methods: ``flow`` (:class:`~.flow.DISFlowPropagator`), ``raft``
(:class:`~.raft.RAFTPropagator`), ``features`` (:class:`~.features.FeaturePropagator`), each in
its own module and chosen by name in :mod:`.methods`, so this base knows none of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from ..exceptions import InputError

@dataclass
class PropagationStep:
    """The result of carrying the state onto one new frame."""

    probs: np.ndarray  # (H, W, C) float32, summing to 1 over C
    confidence: np.ndarray  # (H, W) float32 in [0, 1]: how far each pixel's label can be trusted
    warp_labels: Callable[[np.ndarray], np.ndarray]  # carries any (H, W) id map of the previous frame here
    # carries (H, W, C) probabilities of this frame back onto the previous one (None: the method cannot)
    pull_back: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def score(self) -> float:
        """Mean confidence over the frame: the keyframe policy's signal."""
        return float(self.confidence.mean())


@dataclass
class TrackedFrame:
    """One output frame of semi-supervised or keyframe mode."""

    index: int
    name: str
    image: np.ndarray  # RGB uint8 (H, W, 3)
    class_map: np.ndarray  # (H, W) uint8 (int32 beyond 256 classes)
    confidence: float  # mean propagation confidence (1.0 on the first frame and fresh keyframes)
    keyframe: bool = False  # the segmenter ran on this frame
    reason: str = ""  # why it was a keyframe: first, every, confidence, scene-cut
    warp_labels: Callable[[np.ndarray], np.ndarray] | None = None  # previous frame -> this one (None: first)
    time: float | None = None
    source: str = ""  # the image file, or the video


class Propagator(ABC):
    """Carries per-class probabilities from one frame to the next."""

    name: ClassVar[str] = ""
    # mean confidence below which keyframe mode asks the segmenter again (the scale is the method's)
    default_min_confidence: ClassVar[float] = 0.5

    def __init__(self) -> None:
        self._probs: np.ndarray | None = None

    def start(self, frame: np.ndarray, probs: np.ndarray) -> None:
        """Begin at ``frame`` (RGB uint8 (H, W, 3)) whose labels are ``probs`` (H, W, C)."""
        check_probs(probs, frame.shape[:2])
        self._reset()
        self._probs = np.ascontiguousarray(probs, dtype=np.float32)
        self._remember(frame, self._probs)

    def step(self, frame: np.ndarray) -> PropagationStep:
        """Carry the state onto ``frame`` and make it the new state."""
        if self._probs is None:
            raise InputError("call start(frame, probs) with the first frame and its labels before step().")
        if frame.shape[:2] != self._probs.shape[:2]:
            raise InputError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the sequence "
                             f"{self._probs.shape[1]}x{self._probs.shape[0]}; every frame needs one size.")
        result = self._step(frame)
        self._probs = result.probs
        return result

    def correct(self, probs: np.ndarray) -> None:
        """Replace the labels of the current frame (a keyframe's fused prediction)."""
        if self._probs is None:
            raise InputError("correct() needs a started propagator.")
        check_probs(probs, self._probs.shape[:2])
        self._probs = np.ascontiguousarray(probs, dtype=np.float32)
        self._corrected(self._probs)

    # ----------------------------------------------------------------------------- for subclasses
    def _reset(self) -> None:
        """Forget everything before a new start."""

    @abstractmethod
    def _remember(self, frame: np.ndarray, probs: np.ndarray) -> None:
        """Keep what the next step needs of the starting frame."""

    @abstractmethod
    def _step(self, frame: np.ndarray) -> PropagationStep:
        """Propagate ``self._probs`` onto ``frame``; also remember ``frame`` for the next step."""

    def _corrected(self, probs: np.ndarray) -> None:
        """The current frame's labels changed (memory-based methods update their memory)."""


def check_probs(probs: np.ndarray, size: tuple[int, int]) -> None:
    if probs.ndim != 3 or probs.shape[:2] != tuple(size):
        raise InputError(f"probabilities must be (H, W, C) with (H, W) = {tuple(size)}, got {probs.shape}.")


def one_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """(H, W) integer labels -> (H, W, C) float32 one-hot probabilities."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"a label map must be (H, W), got shape {labels.shape}.")
    if labels.size and labels.min() < 0:
        raise InputError("label maps hold non-negative class ids.")
    n = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 1))
    if labels.size and labels.max() >= n:
        raise InputError(f"label {int(labels.max())} is outside 0..{n - 1}.")
    return np.eye(n, dtype=np.float32)[labels]


def labels_of(probs: np.ndarray) -> np.ndarray:
    """The most probable class per pixel (the first on ties, as argmax), uint8 where it fits."""
    channels = probs.shape[-1]
    if channels > 16:
        return probs.argmax(axis=-1).astype(np.uint8 if channels <= 256 else np.int32)
    # a running maximum over a few channels is several times faster than argmax over the last axis
    best = probs[..., 0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for c in range(1, channels):
        plane = probs[..., c]
        better = plane > best
        labels[better] = c
        np.maximum(best, plane, out=best)
    return labels
