"""Small H.264 clips of random frames, written with PyAV, for tests that read videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_clip(path: Path, frames: int, fps: int = 10, size: tuple[int, int] = (48, 64), seed: int = 0) -> None:
    """``frames`` random RGB frames of ``size`` (H, W) at ``fps`` into ``path`` (folders created)."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
