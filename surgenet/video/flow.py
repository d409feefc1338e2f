"""Mask propagation by dense optical flow, with occlusions found by forward-backward consistency.

The labels of frame t are pulled from frame t-1 along the backward flow (t -> t-1). A pixel is
trusted when the forward flow at the point it came from brings it back to where it started
(Sundaram et al., ECCV 2010: ``|f + b|^2 <= alpha (|f|^2 + |b|^2) + beta``); pixels that fail
(occluded or newly visible) and pixels pulled from outside the frame take the labels of the
trusted pixels around them (normalised box filter). The trusted share is the step's confidence.
The step can also carry a later frame's probabilities back onto the previous frame along the
forward flow (``pull_back``, for keyframe interpolation with a look-ahead).

:class:`DISFlowPropagator` computes the flow with OpenCV's DIS on the CPU and needs no weights.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from ..exceptions import InputError
from ._deps import cv2 as _cv2
from .propagate import PropagationStep, Propagator, check_probs

DIS_PRESETS = ("ultrafast", "fast", "medium")


class FlowPropagator(Propagator):
    """Backward warping with a consistency check; subclasses supply ``_flows``.

    Args:
        scale: the flow is computed at this fraction of the frame size and upsampled (speed);
            default half size for frames wider than 640 pixels, full size for smaller ones.
        alpha, beta: the consistency thresholds (relative, and in squared pixels of the full frame).
        fill_radius: half-width in pixels of the window that fills untrusted pixels.
        consistency: the forward-backward check (and with it the occlusion fill and a confidence that
            means something). Without it only the backward flow is computed (the forward one only
            when ``pull_back`` asks for it), and only pixels pulled from outside the frame are filled:
            cheaper where nothing reads the confidence (real-time keyframes).
    """

    default_min_confidence = 0.7  # share of pixels that pass the consistency check

    def __init__(self, scale: float | None = None, alpha: float = 0.01, beta: float = 0.5,
                 fill_radius: int = 3, consistency: bool = True) -> None:
        super().__init__()
        self.consistency = bool(consistency)
        if scale is not None and not 0 < scale <= 1:
            raise InputError(f"flow scale must be in (0, 1], got {scale}.")
        self.scale = None if scale is None else float(scale)
        self.alpha, self.beta, self.fill_radius = float(alpha), float(beta), int(fill_radius)
        self._prev = None
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    @abstractmethod
    def _prepare(self, frame: np.ndarray):
        """The frame as ``_flows`` wants it (kept as the previous frame)."""

    @abstractmethod
    def _flows(self, prev, cur) -> tuple[np.ndarray, np.ndarray]:
        """Forward (prev -> cur) and backward (cur -> prev) flow, (h, w, 2) float32, in pixels of
        the prepared size."""

    def _backward_flow(self, prev, cur) -> np.ndarray:
        """cur -> prev alone (subclasses that can compute one direction override it)."""
        return self._flows(prev, cur)[1]

    def _forward_flow(self, prev, cur) -> np.ndarray:
        """prev -> cur alone."""
        return self._flows(prev, cur)[0]

    def _reset(self) -> None:
        self._prev = None

    def _remember(self, frame: np.ndarray, probs: np.ndarray) -> None:
        self._prev = self._prepare(frame)

    def _step(self, frame: np.ndarray) -> PropagationStep:
        cv2 = _cv2()
        height, width = frame.shape[:2]
        prev, cur = self._prev, self._prepare(frame)
        if self.consistency:
            fwd, bwd = self._flows(prev, cur)
            valid_small = self._consistent(fwd, bwd, (height, width))
        else:
            fwd, bwd = None, self._backward_flow(prev, cur)
            valid_small = np.ones(bwd.shape[:2], bool)
        self._prev = cur
        sy, sx = height / bwd.shape[0], width / bwd.shape[1]
        if bwd.shape[:2] != (height, width):
            bwd = cv2.resize(bwd, (width, height), interpolation=cv2.INTER_LINEAR)
            bwd[..., 0] *= sx
            bwd[..., 1] *= sy
            valid = cv2.resize(valid_small.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        else:
            valid = valid_small
        gx, gy = self._pixel_grid(height, width)
        map_x, map_y = gx + bwd[..., 0], gy + bwd[..., 1]
        valid &= (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        warped = _remap(cv2, self._probs, map_x, map_y, cv2.INTER_LINEAR)
        confidence = valid.astype(np.float32)
        probs = self._fill(cv2, warped, valid, confidence)

        def warp_labels(labels: np.ndarray) -> np.ndarray:
            return _remap(cv2, np.asarray(labels), map_x, map_y, cv2.INTER_NEAREST)

        def pull_back(later: np.ndarray) -> np.ndarray:
            # the previous frame's pixels looked up in this frame along the forward flow (prev -> this)
            ahead = fwd if fwd is not None else self._forward_flow(prev, cur)
            if ahead.shape[:2] != (height, width):
                ahead = cv2.resize(ahead, (width, height), interpolation=cv2.INTER_LINEAR)
                ahead[..., 0] *= sx
                ahead[..., 1] *= sy
            check_probs(later, (height, width))
            return _remap(cv2, np.ascontiguousarray(later, dtype=np.float32), gx + ahead[..., 0], gy + ahead[..., 1],
                          cv2.INTER_LINEAR)

        return PropagationStep(probs=probs, confidence=confidence, warp_labels=warp_labels, pull_back=pull_back)

    def _consistent(self, fwd: np.ndarray, bwd: np.ndarray, full: tuple[int, int]) -> np.ndarray:
        """Pixels of the current frame whose backward flow the forward flow undoes."""
        cv2 = _cv2()
        h, w = bwd.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        fwd_at = cv2.remap(fwd, gx + bwd[..., 0], gy + bwd[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fx, fy = cv2.split(fwd_at)
        bx, by = cv2.split(bwd)
        diff = cv2.magnitude(fx + bx, fy + by) ** 2
        size = cv2.magnitude(fx, fy) ** 2 + cv2.magnitude(bx, by) ** 2
        # beta is in full-frame pixels squared; the flow here is at the prepared size
        beta = self.beta * (h / full[0]) * (w / full[1])
        return diff <= self.alpha * size + beta

    def _fill(self, cv2, warped: np.ndarray, valid: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Untrusted pixels take the mean labels of the trusted pixels in a window around them
        (a normalised box filter; where the window holds none, the warped labels stay). In place;
        only the untrusted pixels are touched, as they are a minority."""
        untrusted = np.flatnonzero(~valid)
        if untrusted.size == 0:
            return warped
        k = 2 * self.fill_radius + 1
        channels = warped.shape[-1]
        num = cv2.boxFilter(warped * weight[..., None], -1, (k, k), normalize=False, borderType=cv2.BORDER_REPLICATE)
        den = cv2.boxFilter(weight, -1, (k, k), normalize=False, borderType=cv2.BORDER_REPLICATE).reshape(-1)
        d = den[untrusted]
        keep = d > 1e-6
        rows = untrusted[keep]
        flat = warped.reshape(-1, channels)
        flat[rows] = num.reshape(-1, channels)[rows] / d[keep, None]
        return warped

    def scale_for(self, frame: np.ndarray) -> float:
        if self.scale is not None:
            return self.scale
        return 0.5 if max(frame.shape[:2]) > 640 else 1.0

    def _pixel_grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0].shape != (height, width):
            self._grid = tuple(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))
        return self._grid


def _remap(cv2, values: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: int) -> np.ndarray:
    """cv2.remap for any channel count and for integer id maps (kept exact with nearest)."""
    if values.ndim == 2 and values.dtype.kind in "iu":
        src = values.astype(np.float32)  # ids up to 2^24 stay exact
        out = cv2.remap(src, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        return out.astype(values.dtype)
    channels = values.shape[-1] if values.ndim == 3 else 1
    if channels <= 4:
        out = cv2.remap(values, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
        return out if values.ndim == 2 or out.ndim == 3 else out[..., None]
    parts = [cv2.remap(np.ascontiguousarray(values[..., i:i + 4]), map_x, map_y, interpolation,
                       borderMode=cv2.BORDER_REPLICATE) for i in range(0, channels, 4)]
    return np.concatenate([p if p.ndim == 3 else p[..., None] for p in parts], axis=-1)


class DISFlowPropagator(FlowPropagator):
    """OpenCV DIS optical flow (Kroeger et al., ECCV 2016) on grayscale frames; CPU, no weights.

    Args:
        preset: ``ultrafast``, ``fast`` (default) or ``medium``: DIS's speed/accuracy presets.
        scale, alpha, beta, fill_radius: see :class:`FlowPropagator`.
    """

    name = "flow"

    def __init__(self, preset: str = "fast", scale: float | None = None, alpha: float = 0.01, beta: float = 0.5,
                 fill_radius: int = 3, consistency: bool = True) -> None:
        super().__init__(scale, alpha, beta, fill_radius, consistency)
        if preset not in DIS_PRESETS:
            raise InputError(f"unknown DIS preset {preset!r}; valid: {', '.join(DIS_PRESETS)}.")
        cv2 = _cv2()
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        scale = self.scale_for(frame)
        if scale < 1:
            h, w = gray.shape
            gray = cv2.resize(gray, (max(8, round(w * scale)), max(8, round(h * scale))),
                              interpolation=cv2.INTER_AREA)
        return gray

    def _flows(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._forward_flow(prev, cur), self._backward_flow(prev, cur)

    def _forward_flow(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        return self._dis.calc(prev, cur, None)

    def _backward_flow(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        return self._dis.calc(cur, prev, None)
