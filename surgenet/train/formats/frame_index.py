"""Video frames written under their frame index, the key that frame-level labels use.

``surgenet-train extract-frames VIDEOS OUT --fps F`` writes ``OUT/<video stem>/NNNNNN.jpg``, where
NNNNNN is the **index of the frame in the decoded video stream** (0-based, every frame counted,
zero-padded to six digits). Cholec80 numbers its labels the same way (``Frame`` 0, 1, 2 ... at 25
fps in ``videoNN-phase.txt``; 0, 25, 50 ... in ``videoNN-tool.txt``), so a frame file is matched
to its labels by that number, whatever the sampling rate: at 1 fps a 25 fps video gives 000000,
000025, 000050, ...

The frame taken for sample time ``k / F`` is the first frame whose timestamp, counted from the
stream's start, is at or after it (:class:`surgenet.io.sampling.FpsSampler`, the rule of every
reader: pretraining, ``surgenet batch``).
Each JPEG is written atomically; frames already on disk are skipped without re-encoding, so an
interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from PIL import Image

from ...io.atomic import atomic_target
from ...io.video import PartialHandler
from ...io.sampling import check_fps, num_samples
from ..data.video import UnreadableVideoError, sampled_decoded_frames, video_duration

FRAME_DIGITS = 6


def frame_name(index: int) -> str:
    """The file name of frame ``index``: ``000025.jpg``."""
    return f"{index:0{FRAME_DIGITS}d}.jpg"


def iter_indexed_frames(video: str | Path, fps: float,
                        on_partial: PartialHandler | None = None) -> Iterator[tuple[int, "object"]]:
    """``(frame index, PyAV frame)`` of the frames sampled at ``fps``, each frame once, in order.

    A video that ends before the frames its container announces gives its readable frames, then a
    PartialVideoError to ``on_partial`` (raised without one)."""
    check_fps(fps)  # before any decoding, not at the first frame
    # a long gap covers several sample times: still one file
    return ((index, frame) for index, frame, _ in sampled_decoded_frames(video, fps, on_partial))


def extract_indexed_frames(video: str | Path, out_dir: str | Path, fps: float = 1.0, quality: int = 95,
                           progress=None, on_partial: PartialHandler | None = None) -> tuple[int, int]:
    """Write the frames of ``video`` sampled at ``fps`` as ``out_dir/NNNNNN.jpg`` (frame index).

    Returns ``(frames sampled, frames written)``; frames already on disk are counted but not
    written again. ``out_dir`` is made at the first frame, so an unreadable video leaves no empty
    folder; it raises UnreadableVideoError. ``progress`` is an optional tqdm bar updated per frame.
    A video that ends early keeps the frames written and goes to ``on_partial`` (raised without one).
    """
    video, out_dir = Path(video), Path(out_dir)
    sampled = written = 0
    for index, frame in iter_indexed_frames(video, fps, on_partial):
        if sampled == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
        sampled += 1
        if progress is not None:
            progress.update(1)
        target = out_dir / frame_name(index)
        if target.exists():
            continue
        image: Image.Image = frame.to_image()
        with atomic_target(target) as tmp:
            image.convert("RGB").save(tmp, format="JPEG", quality=quality)
        written += 1
    return sampled, written


def expected_samples(video: str | Path, fps: float) -> int | None:
    """How many frames sampling ``video`` at ``fps`` gives (for a progress bar); None if unknown."""
    try:
        return num_samples(video_duration(video), fps)
    except UnreadableVideoError:
        return None


__all__ = ["FRAME_DIGITS", "expected_samples", "extract_indexed_frames", "frame_name", "iter_indexed_frames"]
