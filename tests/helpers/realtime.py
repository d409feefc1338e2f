"""Shared pieces of the real-time tests: a generated pattern clip and a slow exported-model stand-in."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def write_pattern_clip(path: Path, n: int, fps: int = 25, moving: bool = True, h: int = 48, w: int = 64) -> Path:
    """A smooth pattern; ``moving``: shifted with the index (every frame differs), else the same
    frame throughout (no scene cut)."""
    import av

    yy, xx = np.mgrid[0:h, 0:w]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(n):
            s = t if moving else 0
            frame = np.stack([(xx * 4 + s * 9) % 256, (yy * 5 + s * 7) % 256, (xx + yy + s * 3) % 256], -1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return path


class SleepyBackend:
    """An exported-model stand-in: ``sleep`` seconds per call, constant logits (2 classes)."""

    config = {"task": "segmentation", "num_classes": 2, "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": [3, 16, 16]}

    def __init__(self, sleep: float) -> None:
        self.sleep, self.calls = sleep, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(self.sleep)
        logits = np.zeros((x.shape[0], 2, 4, 4), np.float32)
        logits[:, 1] = 1.0
        return logits
