"""Videos decoded with PyAV as a stream: one frame in memory at a time, whatever the length;
and written back (H.264) frame by frame, atomically."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..exceptions import InputError
from .atomic import atomic_target
from .sampling import FpsSampler

# Containers that PyAV (FFmpeg) demuxes; surgical recorders often write MPEG transport streams
# (.ts/.m2ts/.mts) or MPEG program streams (.mpg/.mpeg).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".ts", ".m2ts", ".mts")


class PartialVideoError(InputError):
    """A video that ended before the frames its container announces: truncated, or an index that
    counts frames the file does not hold. Raised (or handed to ``on_partial``) after the frames
    that could be read, so a caller may keep them and still say the video is incomplete."""

    def __init__(self, path: str | Path, expected: int | None, read: int, reason: str = "") -> None:
        self.path, self.expected, self.read, self.reason = str(path), expected, int(read), reason
        of = f"{read} of the {expected} frames its container announces" if expected else f"{read} frames"
        why = f" ({reason})" if reason else ""
        super().__init__(f"{path} ended after {of}{why}: the file is truncated or damaged; "
                         "the results hold only the frames read.")


PartialHandler = Callable[[PartialVideoError], None]
# Frames a complete video may fall short of its announced count (rounded durations, edit lists).
MISSING_TOLERANCE = 0.01


def stream_start_seconds(stream) -> float:
    """The stream's start time in seconds (0 when the container gives none)."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def expected_frames(container, stream) -> int | None:
    """Frames the container announces for ``stream``: its frame count, else duration x frame rate."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        # Microseconds (av.time_base). Matroska's duration runs from 0 and so includes the stream's
        # start offset; subtracting it can only lower the count, never flag a complete video short.
        seconds = container.duration / 1_000_000
        start = stream_start_seconds(stream)
        if 0 < start < seconds:
            seconds -= start
    if not rate or not seconds:
        return None
    return int(round(seconds * float(rate)))


def is_short(read: int, expected: int | None) -> bool:
    """Whether ``read`` frames fall short of ``expected`` by more than a complete video may."""
    return expected is not None and expected - read > max(1, int(expected * MISSING_TOLERANCE))


def check_complete(path: str | Path, read: int, expected: int | None, on_partial: PartialHandler | None,
                   reason: str = "") -> None:
    """End of a decoding pass: a short video (or one that broke off after ``read`` frames, ``reason``)
    goes to ``on_partial``, or is raised as a :class:`PartialVideoError` when there is none."""
    if not reason and not is_short(read, expected):
        return
    error = PartialVideoError(path, expected, read, reason)
    if on_partial is None:
        raise error
    on_partial(error)


def decode_checked(container, stream, path: str | Path, on_partial: PartialHandler | None = None) -> Iterator:
    """The PyAV frames of ``stream``, then the completeness check of every reader of videos.

    Data that breaks off after some frames, or an end before the frames the container announces,
    is a :class:`PartialVideoError` (to ``on_partial``, or raised) once the readable frames are
    out; FFmpeg's error before the first frame is raised as it is (each reader words it).
    """
    av = import_av()
    expected = expected_frames(container, stream)
    read, reason = 0, ""
    try:
        for frame in container.decode(stream):
            read += 1
            yield frame
    except av.error.FFmpegError as exc:
        if read == 0:
            raise
        reason = f"decoding failed: {exc}"
    check_complete(path, read, expected, on_partial, reason)


@dataclass
class Frame:
    """One frame of a video or of a folder of images: what every reader yields and every
    predictor, tracker and archive job consumes."""

    index: int  # position in the decoded stream (every frame counted) or in the sorted folder
    name: str  # output name: frame_NNNNNN (videos) or the image's stem (folders)
    image: np.ndarray  # RGB uint8 (H, W, 3)
    time: float | None = None  # seconds from the video stream's start (None: no timestamp, or an image)
    source: str = ""  # the video, or the image file


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def import_av(extra: str = "video"):
    """PyAV, imported when a video is read; without it an error that names the extra to install."""
    try:
        import av
    except ImportError as exc:
        raise InputError(f"reading videos needs PyAV: pip install 'surgenet[{extra}]'.") from exc
    return av


def frame_count(path: str | Path) -> int | None:
    """Frames in the first video stream as the container reports them (``None`` if unknown)."""
    av = import_av()
    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames) or None
    except (av.error.FFmpegError, IndexError):
        return None


@dataclass(frozen=True)
class VideoInfo:
    frames: int | None  # as the container reports them (None: unknown)
    fps: float | None  # average frame rate of the first video stream (None: unknown)
    width: int
    height: int


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of the first video stream; a file that is missing, that
    FFmpeg cannot open or that has no video stream is an :class:`InputError` (checked before any
    model is built)."""
    av = import_av()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return VideoInfo(frames=int(stream.frames) or None, fps=float(rate) if rate else None,
                             width=int(stream.codec_context.width), height=int(stream.codec_context.height))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot open video {path}: {exc}. Check that the file is complete and is a video.") from exc


class VideoWriter:
    """Writes RGB frames to an H.264 video (MPEG-4 ``mpeg4`` where libx264 is missing), one at a
    time; the file appears under its name only once closed without error (atomic).

    Examples:
        >>> with VideoWriter("out/overlay.mp4", fps=25) as writer:
        ...     writer.write(rgb_frame)
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast") -> None:
        self.path = Path(path)
        self.fps, self.crf, self.preset = fps, crf, preset
        self._stack = ExitStack()
        self._container = None
        self._stream = None
        self.frames = 0

    def __enter__(self) -> "VideoWriter":
        av = import_av()
        tmp = self._stack.enter_context(atomic_target(self.path))
        self._container = self._stack.enter_context(av.open(str(tmp), "w", format="mp4"))
        return self

    def write(self, image: np.ndarray) -> None:
        """Append one RGB uint8 (H, W, 3) frame; the first one fixes the size (even sizes for yuv420p)."""
        av = import_av()
        if self._container is None:
            raise RuntimeError("VideoWriter.write() outside its with-block.")
        if self._stream is None:
            from fractions import Fraction

            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": str(self.crf), "preset": self.preset}
        image = image[:self._stream.height, :self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def __exit__(self, *exc_info) -> bool:
        try:
            if exc_info[0] is None and self._stream is not None:
                self._container.mux(self._stream.encode())  # flush the encoder's delayed frames
        finally:
            self._container = None
            suppress = self._stack.__exit__(*exc_info)
        return bool(suppress)


def iter_video(path: str | Path, stride: int = 1, fps: float | None = None,
               on_partial: PartialHandler | None = None) -> Iterator[Frame]:
    """Every ``stride``-th frame of the first video stream, decoded lazily (``container.decode``);
    with ``fps``, the frames :class:`~surgenet.io.sampling.FpsSampler` samples at that rate instead
    (each frame once, however many sample times it serves: the rule of ``surgenet-train extract-frames``).
    Frame times are seconds from the stream's start.

    A video that ends before the frames its container announces, or whose data breaks off after
    some frames, is never passed off as complete: once its readable frames are yielded, a
    :class:`PartialVideoError` (expected and read counts) goes to ``on_partial``, or is raised
    when there is none. A video with no readable frame at all is an :class:`InputError`.
    """
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}.")
    sampler = FpsSampler(fps) if fps else None
    av = import_av()
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
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and \
            stream.time_base is not None else 0.0
        rate = float(stream.average_rate or 25)
        try:
            for index, frame in enumerate(decode_checked(container, stream, path, on_partial)):
                time = float(frame.time) - start if frame.time is not None else None
                if sampler is not None:
                    if not sampler.take(time if time is not None else index / rate):
                        continue
                elif index % stride:
                    continue
                yield Frame(index, f"frame_{index:06d}", frame.to_ndarray(format="rgb24"), time, str(path))
        except av.error.FFmpegError as exc:
            raise InputError(f"decoding {path} failed before its first frame: {exc}. Check that the file "
                             "is complete.") from exc
    finally:
        container.close()
