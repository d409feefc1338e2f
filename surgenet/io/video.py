"""Videos decoded with PyAV as a stream: one frame in memory at a time, whatever the length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..exceptions import InputError

# Containers that PyAV (FFmpeg) demuxes; surgical recorders often write MPEG transport streams
# (.ts/.m2ts/.mts) or MPEG program streams (.mpg/.mpeg).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".ts", ".m2ts", ".mts")


@dataclass(frozen=True)
class VideoFrame:
    index: int  # position in the decoded stream, counting every frame
    time: float | None  # seconds from the start, from the frame's timestamp
    image: np.ndarray  # RGB uint8 (H, W, 3)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError as exc:
        raise InputError("reading videos needs PyAV: pip install 'surgenet[video]'.") from exc
    return av


def frame_count(path: str | Path) -> int | None:
    """Frames in the first video stream as the container reports them (``None`` if unknown)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames) or None
    except (av.error.FFmpegError, IndexError):
        return None


def iter_video(path: str | Path, stride: int = 1) -> Iterator[VideoFrame]:
    """Every ``stride``-th frame of the first video stream, decoded lazily (``container.decode``)."""
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}.")
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist.")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot open video {path}: {exc}. Check that the file is complete.") from exc
    try:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding; the order of frames is unchanged
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % stride == 0:
                    time = float(frame.time) if frame.time is not None else None
                    yield VideoFrame(index, time, frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            raise InputError(f"decoding {path} failed after {index + 1} frames: {exc}.") from exc
    finally:
        container.close()
