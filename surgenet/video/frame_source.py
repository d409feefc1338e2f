"""Ordered frames of a video or a folder of images, and the first-frame mask of semi-supervised mode."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..exceptions import InputError
from ..io import Frame, is_video, iter_video, list_images, read_image
from ..io.masks import IGNORE_INDEX, read_label_image
from ..io.video import PartialHandler

logger = logging.getLogger(__name__)

SkipHandler = Callable[[str, Exception], None]


def _log_skip(name: str, exc: Exception) -> None:
    logger.warning("skipped %s: %s", name, exc)


def _folder_names(files: list[Path], root: Path) -> list[str]:
    """Stems, except where two files share one (a.jpg beside a.png): then the full relative name."""
    stems = [str(f.relative_to(root).with_suffix("")) for f in files]
    dupes = {s for s in stems if stems.count(s) > 1}
    return [str(f.relative_to(root)) if s in dupes else s for f, s in zip(files, stems)]


def check_source(path: str | Path) -> str:
    """``"video"`` or ``"folder"``; a clear error for anything else, before any work starts."""
    path = Path(path)
    if path.is_dir():
        if not list_images(path):
            raise InputError(f"{path} holds no images (.png, .jpg, ...); pass a folder of frames or a video.")
        return "folder"
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a video or a folder of frames.")
    if is_video(path):
        return "video"
    raise InputError(f"{path} is neither a folder of frames nor a video (.mp4, .avi, .mkv, ...).")


def iter_frames(path: str | Path, on_skip: SkipHandler | None = None, stride: int = 1,
                on_partial: PartialHandler | None = None) -> Iterator[Frame]:
    """Frames of a video (streamed) or of a folder (natural order), one at a time.

    Unreadable images and frames whose size differs from the first frame go to ``on_skip``
    (default: a logged warning) and are left out; every propagation needs one frame size. A video
    that ends before the frames its container announces goes to ``on_partial`` once its readable
    frames are out (raised as a PartialVideoError without one).
    """
    on_skip = on_skip or _log_skip
    path = Path(path)
    kind = check_source(path)
    size: tuple[int, int] | None = None

    def sized(frame: Frame) -> bool:
        nonlocal size
        shape = frame.image.shape[:2]
        if size is None:
            size = shape
        if shape != size:
            on_skip(frame.name, InputError(f"frame is {shape[1]}x{shape[0]}, the sequence {size[1]}x{size[0]}"))
            return False
        return True

    if kind == "video":
        for frame in iter_video(path, stride, on_partial=on_partial):
            if sized(frame):
                yield frame
        return
    files = list_images(path)
    for index, (file, name) in enumerate(zip(files, _folder_names(files, path))):
        if index % stride:
            continue
        try:
            image = read_image(file)
        except InputError as exc:
            on_skip(name, exc)
            continue
        frame = Frame(index, name, image, None, str(file))
        if sized(frame):
            yield frame


def read_first_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A first-frame mask as an (H, W) int64 label map.

    The PNG holds class (object) ids in one channel (grayscale or palette, as DAVIS writes them).
    A mask with only the values 0 and 255 is a binary mask of one object (id 1). In a mask with
    other ids, 255 means unlabelled and becomes background. ``size`` (H, W): the frames' size,
    which the mask must have.
    """
    path = Path(path)
    labels, mode = read_label_image(path)
    if labels.ndim != 2 or mode not in ("L", "P", "1", "I", "I;16"):
        raise InputError(f"mask {path} is a {mode} image; pass a one-channel PNG of class ids (0 background, "
                         "1, 2, ... objects) or a 0/255 binary mask.")
    labels = labels.astype(np.int64)
    if size is not None and labels.shape != tuple(size):
        raise InputError(f"mask {path} is {labels.shape[1]}x{labels.shape[0]} but the frames are "
                         f"{size[1]}x{size[0]}; give the mask of the first frame at the frame's size.")
    values = set(np.unique(labels).tolist())
    if values <= {0, 255}:
        return (labels == 255).astype(np.int64)
    if IGNORE_INDEX in values:
        logger.warning("mask %s: value %d (unlabelled) taken as background", path, IGNORE_INDEX)
        labels[labels == IGNORE_INDEX] = 0
    return labels
