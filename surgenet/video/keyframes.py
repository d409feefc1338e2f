"""Keyframe mode: a segmentation model on keyframes, propagation in between.

A frame becomes a keyframe when it is the first, when ``every`` frames have passed since the
last one, when the propagation's mean confidence drops below ``min_confidence`` (flow: the share
of pixels that pass the forward-backward check; features: the mean affinity of the kept keys),
or at a scene cut (the grey-level histogram of a thumbnail changes abruptly: camera out of the
body, a cut in an edited video). On a keyframe the fresh prediction is fused with the propagated
one, pixel by pixel, in proportion to the propagation's confidence there (``fusion`` caps the
propagated share); after a scene cut the fresh prediction stands alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from ..exceptions import InputError
from .frame_source import Frame
from .propagate import Propagator, TrackedFrame, check_probs, labels_of

Segmenter = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) -> probabilities (H, W, C)


@dataclass
class KeyframePolicy:
    """When the segmenter runs. ``min_confidence=None``: the propagator's own default."""

    every: int = 10
    min_confidence: float | None = None
    cut_threshold: float = 0.5  # histogram correlation between consecutive frames below this: a cut

    def __post_init__(self) -> None:
        if self.every < 1:
            raise InputError(f"keyframe interval must be >= 1 frame, got {self.every}.")
        if not -1 <= self.cut_threshold <= 1:
            raise InputError(f"cut_threshold is a correlation in [-1, 1], got {self.cut_threshold}.")


class SceneCutDetector:
    """Correlation of 32-bin grey histograms of consecutive 64x36 thumbnails."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self._last: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> bool:
        h, w = frame.shape[:2]
        ys = np.linspace(0, h - 1, 36).astype(int)
        xs = np.linspace(0, w - 1, 64).astype(int)
        grey = frame[ys][:, xs].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        hist = np.histogram(grey, bins=32, range=(0, 256))[0].astype(np.float64)
        last, self._last = self._last, hist
        if last is None:
            return False
        a, b = hist - hist.mean(), last - last.mean()
        denom = np.sqrt((a * a).sum() * (b * b).sum())
        return bool(denom > 0 and (a * b).sum() / denom < self.threshold)


@dataclass
class KeyframeStats:
    frames: int = 0
    model_calls: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def saving(self) -> float:
        """Share of frames that did not need the segmenter."""
        return 1.0 - self.model_calls / self.frames if self.frames else 0.0

    def summary(self) -> str:
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        return (f"segmenter on {self.model_calls} of {self.frames} frame(s) ({100 * self.saving:.0f}% of the model "
                f"calls saved; keyframes: {why or 'none'})")


class KeyframeSegmenter:
    """Runs ``segment`` on keyframes and ``propagator`` in between; counts the model calls in ``stats``.

    Args:
        segment: frame -> per-class probabilities (H, W, C), e.g. :meth:`surgenet.Predictor.probabilities`.
        propagator: how labels move between keyframes.
        policy: when to take a keyframe.
        fusion: largest weight of the propagated labels in a keyframe's fused labels (0: fresh only).
    """

    def __init__(self, segment: Segmenter, propagator: Propagator, policy: KeyframePolicy | None = None,
                 fusion: float = 0.5) -> None:
        if not 0 <= fusion < 1:
            raise InputError(f"fusion must be in [0, 1), got {fusion}.")
        self.segment, self.propagator = segment, propagator
        self.policy = policy or KeyframePolicy()
        self.fusion = float(fusion)
        self.min_confidence = (self.policy.min_confidence if self.policy.min_confidence is not None
                               else propagator.default_min_confidence)
        self.stats = KeyframeStats()

    def _fresh(self, image: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.segment(image), dtype=np.float32)
        check_probs(probs, image.shape[:2])
        self.stats.model_calls += 1
        return probs

    def run(self, frames: Iterable[Frame]) -> Iterator[TrackedFrame]:
        """Yield every frame with its labels, streaming."""
        cut = SceneCutDetector(self.policy.cut_threshold)
        since = 0
        started = False
        for frame in frames:
            self.stats.frames += 1
            is_cut = cut(frame.image)
            if not started:
                probs = self._fresh(frame.image)
                self.propagator.start(frame.image, probs)
                started, since = True, 0
                self.stats.reasons["first"] += 1
                yield TrackedFrame(frame.index, frame.name, frame.image, labels_of(probs), 1.0, True, "first",
                                   time=frame.time, source=frame.source)
                continue
            step = self.propagator.step(frame.image)
            since += 1
            score = step.score
            reason = ("scene-cut" if is_cut else "every" if since >= self.policy.every
                      else "confidence" if score < self.min_confidence else "")
            probs = step.probs
            if reason:
                fresh = self._fresh(frame.image)
                if reason == "scene-cut" or fresh.shape[-1] != probs.shape[-1]:
                    probs = fresh
                else:
                    w = (self.fusion * step.confidence)[..., None]
                    probs = (1.0 - w) * fresh + w * probs
                self.propagator.correct(probs)
                since = 0
                self.stats.reasons[reason] += 1
            yield TrackedFrame(frame.index, frame.name, frame.image, labels_of(probs), score, bool(reason), reason,
                               warp_labels=step.warp_labels, time=frame.time, source=frame.source)
