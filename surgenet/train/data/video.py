"""Frames of a video at N frames per second, with PyAV.

The frame sampled at time ``t`` is the first decoded frame whose timestamp is at or after ``t``
(within a millisecond), both when decoding a whole video (:func:`iter_sampled_frames`) and when
seeking to one frame (:func:`read_frame_at`), so extracted folders and on-the-fly sampling agree.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

from PIL import Image

from ...exceptions import InputError
from ...io.atomic import atomic_target

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv")
_EPS = 1e-3  # seconds: container timestamps are rounded


def _av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is part of the train extra
        raise InputError("reading videos needs PyAV: pip install 'surgenet[train]'.") from exc
    return av


def video_duration(path: str | Path) -> float:
    """Length of the first video stream in seconds (decoding the stream when the header has none)."""
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
        last = 0.0
        for frame in container.decode(stream):
            if frame.time is not None:
                last = frame.time
        rate = float(stream.average_rate or 25)
        return last + 1.0 / rate


def num_samples(duration: float, fps: float) -> int:
    """Number of sample times ``k / fps`` that fall inside a video of ``duration`` seconds."""
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}.")
    return max(0, math.ceil(duration * fps - _EPS))


def iter_sampled_frames(path: str | Path, fps: float) -> Iterator[tuple[int, Image.Image]]:
    """Decode ``path`` once and yield ``(k, frame)`` for the frames sampled at ``k / fps`` seconds."""
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        k = 0
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else 0.0
            if t + _EPS < k / fps:
                continue
            image = frame.to_image()
            # A long gap between frames covers several sample times: each gets this frame.
            while t + _EPS >= k / fps:
                yield k, image
                k += 1


def read_frame_at(container, t: float) -> Image.Image:
    """The frame sampled at ``t`` seconds from an open PyAV container (seeks to the keyframe before)."""
    stream = container.streams.video[0]
    offset = int(max(0.0, t - 0.5) / stream.time_base) + (stream.start_time or 0)
    container.seek(offset, stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.time is not None and frame.time + _EPS >= t:
            return frame.to_image()
    if last is None:
        raise InputError(f"no frame at {t:.3f} s in {container.name}.")
    return last.to_image()


def extract_frames(video: str | Path, out_dir: str | Path, fps: float = 1.0, quality: int = 95) -> int:
    """Write the frames of ``video`` sampled at ``fps`` as ``out_dir/<stem>_<k>.jpg``; returns the count.

    Existing frames are kept, so an interrupted extraction can be run again; each JPEG is written
    to a temporary name first, so a kill never leaves a half-written frame behind.
    """
    video, out_dir = Path(video), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for k, image in iter_sampled_frames(video, fps):
        target = out_dir / f"{video.stem}_{k:06d}.jpg"
        count += 1
        if target.exists():
            continue
        with atomic_target(target) as tmp:
            image.convert("RGB").save(tmp, format="JPEG", quality=quality)
    return count


def list_videos(path: str | Path) -> list[Path]:
    """The video files of a folder (recursively, sorted), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
