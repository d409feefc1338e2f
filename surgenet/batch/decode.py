"""Decoding an input into preprocessed frame rows, the first stage of both engines.

A video is sampled at ``fps`` frames per second of its timestamps (every frame when ``fps`` is
None), counted from the stream's start, by :class:`surgenet.io.sampling.FpsSampler`; a frame folder yields its images in natural order.
Each input ends with one *marker* row that carries its frame count, or the error that stopped
it, so the collector knows when an input is complete whatever order the rows arrive in. A video
that ends before the frames its container announces keeps its rows: its marker says ``partial``
with the frames expected and read.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..exceptions import SurgeNetError
from ..io import iter_video, list_images, read_image
from ..io.video import PartialHandler, PartialVideoError
from .inputs import ArchiveInput


def _row(item: ArchiveInput, frame: int, time: float | None, name: str, image: np.ndarray | None,
         transform, pixels_shape: tuple[int, ...], marker: bool = False, count: int = 0,
         error: str = "", skipped: str = "", source: str = "", partial: bool = False,
         expected: int | None = None, read: int | None = None) -> dict[str, Any]:
    pixels = transform(image).numpy() if image is not None else np.zeros(pixels_shape, np.float32)
    height, width = (image.shape[:2] if image is not None else (0, 0))
    return {"item": item.id, "frame": frame, "time": np.nan if time is None else float(time), "name": name,
            "source": source or item.path,
            "height": height, "width": width, "pixels": pixels, "marker": marker, "count": count,
            "error": error, "skipped": skipped, "partial": partial, "expected": -1 if expected is None else expected,
            "read": count if read is None else read}


def sampled_video(path: str, fps: float | None,
                  on_partial: PartialHandler | None = None) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """``(frame index, seconds from the stream's start, image)`` of the frames sampled at ``fps``
    (every frame when None): :func:`surgenet.io.iter_video`'s sampling, the same frames as
    ``surgenet-train extract-frames``; a video that ends early goes to ``on_partial``."""
    for frame in iter_video(path, fps=fps, on_partial=on_partial):
        yield frame.index, frame.time, frame.image


def decode_rows(item: ArchiveInput, fps: float | None, transform) -> Iterator[dict[str, Any]]:
    """Rows of one input: one per sampled frame, then its marker row (count, or the error)."""
    shape = (3, *transform.size)
    count, skipped = 0, []
    partial: list[PartialVideoError] = []
    try:
        if item.kind == "video":
            for index, time, image in sampled_video(item.path, fps, partial.append):
                yield _row(item, index, time, f"frame_{index:06d}", image, transform, shape)
                count += 1
        else:
            for index, path in enumerate(list_images(item.path)):
                try:
                    image = read_image(path)
                except SurgeNetError as exc:  # one unreadable frame is reported, the folder goes on
                    skipped.append(f"{path.name}: {exc}")
                    continue
                time = index / fps if fps else None
                yield _row(item, index, time, path.stem, image, transform, shape, source=str(path))
                count += 1
    except SurgeNetError as exc:  # unreadable or truncated video: the job goes on without it
        yield _row(item, -1, None, "", None, transform, shape, marker=True, count=count, error=str(exc))
        return
    if partial and count:  # its readable frames are kept, and it is listed as partial
        yield _row(item, -1, None, "", None, transform, shape, marker=True, count=count, error=str(partial[0]),
                   partial=True, expected=partial[0].expected, read=partial[0].read)
        return
    error = str(partial[0]) if partial else "" if count else "no frame could be decoded"
    yield _row(item, -1, None, "", None, transform, shape, marker=True, count=count, error=error,
               skipped=" | ".join(skipped), expected=partial[0].expected if partial else None,
               read=partial[0].read if partial else None)


def stack_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows -> a column batch (what Ray Data hands to ``map_batches``)."""
    batch: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        batch[key] = np.stack(values) if key == "pixels" else np.asarray(values)
    return batch
