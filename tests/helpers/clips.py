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


def write_truncated_clip(path: Path, frames: int, fps: int = 10, keep: float = 0.5, seed: int = 0) -> None:
    """A clip of ``frames`` frames whose file is cut to its first ``keep`` share of bytes, as a copy
    interrupted mid-way leaves it: the container still announces every frame (a Matroska header's
    duration, an MP4 index written first), the data holds about half of them."""
    import av

    suffix = path.suffix.lower()
    options = {"movflags": "faststart"} if suffix in (".mp4", ".mov") else {}
    whole = path.with_name(f".whole{suffix}")
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(whole), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = 48, 64
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[:int(len(data) * keep)])
