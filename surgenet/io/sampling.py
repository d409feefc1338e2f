"""Which frames of a video to keep at N frames per second: one rule for every reader.

Sample ``k`` is due at ``k / fps`` seconds counted from the video stream's start time (not from
0, and not from the first decoded frame: MPEG transport streams often start near 1.4 s, and a
stream's first frame may come after its start). A frame takes every sample due at or before its
own time, within a millisecond (container timestamps are rounded), so a long gap between two
frames gives the frame after it several samples. ``surgenet batch``, ``surgenet embed`` and
``surgenet-train extract-frames`` all sample through :class:`FpsSampler`, so they pick the same
frames of a video.
"""

from __future__ import annotations

import math

from ..exceptions import InputError

TOLERANCE_S = 1e-3  # container timestamps are rounded


def check_fps(fps: float) -> float:
    """``fps`` as a float if it is a positive, finite rate; else an InputError that says so.

    0 would divide by zero and a negative or infinite rate would sample without end.
    """
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"fps must be a positive number of frames per second (e.g. 1), not {fps!r}.")
    return value


class FpsSampler:
    """Feed it each decoded frame's time (seconds from the stream's start), in decoding order;
    :meth:`take` answers which samples that frame serves."""

    def __init__(self, fps: float) -> None:
        self.fps = check_fps(fps)
        self.next_sample = 0

    def due(self, sample: int) -> float:
        """When sample ``sample`` is due, in seconds from the stream's start."""
        return sample / self.fps

    def take(self, seconds: float) -> range:
        """The sample indices the frame at ``seconds`` serves (empty: skip the frame)."""
        first = self.next_sample
        while seconds + TOLERANCE_S >= self.due(self.next_sample):
            self.next_sample += 1
        return range(first, self.next_sample)


def num_samples(duration: float, fps: float) -> int:
    """Number of sample times ``k / fps`` that fall inside a video of ``duration`` seconds."""
    return max(0, math.ceil(duration * check_fps(fps) - TOLERANCE_S))


__all__ = ["FpsSampler", "TOLERANCE_S", "check_fps", "num_samples"]
