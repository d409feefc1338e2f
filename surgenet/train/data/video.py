"""Frames of a video at N frames per second, with PyAV.

Which frames: :mod:`surgenet.io.sampling` (sample ``k`` at ``k / fps`` s from the stream's start,
taken by the first frame at or after it), both when decoding a whole video
(:func:`iter_sampled_frames`) and when seeking to one frame (:func:`read_frame_at`), so extracted
folders, on-the-fly sampling and ``surgenet batch`` agree.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image

from ...exceptions import InputError
from ...io.atomic import atomic_target
from ...io.sampling import TOLERANCE_S as _EPS
from ...io.sampling import FpsSampler, check_fps
from ...io.video import VIDEO_EXTENSIONS, PartialHandler, decode_checked, import_av, stream_start_seconds  # noqa: F401,E501 - one list

logger = logging.getLogger(__name__)


class UnreadableVideoError(InputError):
    """A video file that PyAV cannot open or decode: garbage or truncated data, no video stream."""


def _av():
    return import_av("train")  # the one PyAV import helper; training names its own extra


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn PyAV's and the OS's errors while reading ``path`` into an UnreadableVideoError naming it."""
    av = _av()
    try:
        yield
    except (av.error.FFmpegError, OSError) as exc:
        raise UnreadableVideoError(f"cannot read video {path}: {exc}. Check that the file is a complete "
                                   "video that ffmpeg can play.") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise UnreadableVideoError(f"{path} has no video stream.")
    return container.streams.video[0]


def video_duration(path: str | Path) -> float:
    """Length in seconds of the first video stream, from its start time to the end of its last frame.

    The stream's own duration when the header has it; otherwise the end of the last packet (read
    from the last keyframe on, not decoded), since a container's duration may include the start
    offset (Matroska). Raises UnreadableVideoError for a file PyAV cannot read.
    """
    av = _av()
    path = Path(path)
    with _reading(path), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        if stream.duration is not None and stream.time_base is not None:
            announced = float(stream.duration * stream.time_base)
            end = _stream_end(container, stream)  # a truncated file keeps its header: check the data's end
            held = None if end is None else max(0.0, end - stream_start_seconds(stream))
            slack = 1.0 / float(stream.average_rate or 25) + 0.01 * announced
            if held is not None and held + slack < announced:
                logger.warning("%s announces %.2f s of video but its data ends at %.2f s (truncated or damaged); "
                               "only the %.2f s it holds are sampled", path, announced, held, held)
                return held
            return announced
        end = _stream_end(container, stream)
        if end is None:
            return float(stream.frames / (stream.average_rate or 25))
        return max(0.0, end - stream_start_seconds(stream))


def _stream_end(container, stream) -> float | None:
    """End time in seconds of the stream's last packet (None if no packet has a timestamp)."""
    av = _av()
    if container.duration is not None and stream.time_base is not None:
        # Past the end either way (duration is measured from 0 or from the start): the seek lands
        # on the last keyframe. A failed seek leaves the demuxer at the start, which is slower only.
        beyond = (stream.start_time or 0) + int(container.duration / av.time_base / stream.time_base) + 1
        try:
            container.seek(beyond, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            pass
    frame_time = 1.0 / float(stream.average_rate or 25)
    end = None
    for packet in container.demux(stream):
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            continue
        packet_end = float(ts * stream.time_base) + (float(packet.duration * stream.time_base)
                                                      if packet.duration else frame_time)
        end = packet_end if end is None else max(end, packet_end)
    return end


def iter_sampled_frames(path: str | Path, fps: float,
                        on_partial: PartialHandler | None = None) -> Iterator[tuple[int, Image.Image]]:
    """Decode ``path`` once and yield ``(k, frame)`` for the frames sampled at ``k / fps`` seconds.

    ``fps`` is checked here, before any decoding; a file PyAV cannot open raises
    UnreadableVideoError. A video that ends before the frames its container announces (or breaks
    off) gives its readable frames, then a PartialVideoError to ``on_partial`` (raised without one).
    """
    return _sampled_frames(Path(path), check_fps(fps), on_partial)


def sampled_decoded_frames(path: str | Path, fps: float,
                           on_partial: PartialHandler | None = None) -> Iterator[tuple[int, object, list[int]]]:
    """Decode ``path`` once; yield ``(frame index, PyAV frame, sample numbers)`` for each frame that
    takes at least one sample time ``k / fps`` (the one sampling loop of every video reader).

    The frame index counts every decoded frame from 0; a long gap between frames covers several
    sample times, so one frame may carry several sample numbers."""
    path = Path(path)
    fps = check_fps(fps)
    av = _av()
    with _reading(path), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        start = stream_start_seconds(stream)
        rate = float(stream.average_rate or 25)
        sampler = FpsSampler(fps)
        for index, frame in enumerate(decode_checked(container, stream, path, on_partial)):
            samples = sampler.take(frame.time - start if frame.time is not None else index / rate)
            if samples:
                yield index, frame, samples


def _sampled_frames(path: Path, fps: float, on_partial: PartialHandler | None) -> Iterator[tuple[int, Image.Image]]:
    for _, frame, samples in sampled_decoded_frames(path, fps, on_partial):
        image = frame.to_image()
        for k in samples:  # each sample time gets this frame
            yield k, image


def read_frame_at(container, t: float) -> Image.Image:
    """The frame sampled at ``t`` seconds (from the stream's start) of an open PyAV container;
    seeks to the keyframe before it."""
    stream = container.streams.video[0]
    start = stream_start_seconds(stream)
    offset = int(max(0.0, t - 0.5) / stream.time_base) + (stream.start_time or 0)
    container.seek(offset, stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.time is not None and frame.time - start + _EPS >= t:
            return frame.to_image()
    if last is None:
        raise InputError(f"no frame at {t:.3f} s in {container.name}.")
    return last.to_image()


def extract_frames(video: str | Path, out_dir: str | Path, fps: float = 1.0, quality: int = 95,
                   on_partial: PartialHandler | None = None) -> int:
    """Write the frames of ``video`` sampled at ``fps`` as ``out_dir/<stem>_<k>.jpg``; returns the count.

    Existing frames are kept, so an interrupted extraction can be run again; each JPEG is written
    to a temporary name first, so a kill never leaves a half-written frame behind. ``out_dir`` is
    made at the first frame, so a video that cannot be opened leaves no empty folder; such a video
    raises UnreadableVideoError; one that ends early keeps its frames and goes to ``on_partial``
    (raised without one).
    """
    video, out_dir = Path(video), Path(out_dir)
    count = 0
    for k, image in iter_sampled_frames(video, fps, on_partial):
        if count == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
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
