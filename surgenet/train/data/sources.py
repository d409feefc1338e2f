"""Sources of unlabelled frames: image folders, frame lists and videos sampled at N fps.

Every source is a sequence of frames: ``len(source)`` and ``source.load(i) -> PIL.Image``.
Paths are kept in one packed byte buffer, not a list of Python strings, so millions of frames
cost little memory and DataLoader workers share them without copy-on-write growth.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
from PIL import Image

from ...exceptions import InputError
from ...io.images import IMAGE_EXTENSIONS
from ...io.sampling import check_fps, num_samples
from ...io.text import read_user_text
from .video import VIDEO_EXTENSIONS, UnreadableVideoError, list_videos, read_frame_at, video_duration

logger = logging.getLogger(__name__)
LIST_COLUMNS = ("path", "image", "frame", "file", "filename")


class FrameSource(Protocol):
    name: str

    def __len__(self) -> int: ...

    def load(self, index: int) -> Image.Image: ...


class PathTable:
    """An immutable list of strings packed into one uint8 buffer with offsets."""

    def __init__(self, paths: Iterable[str]) -> None:
        encoded = [p.encode("utf-8") for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._buffer[start:end].tobytes().decode("utf-8")


def _open_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")  # convert() reads the pixels, so a truncated file fails here


class ImageFiles:
    """Frames stored as image files (a folder or a list); ``load`` reads one as RGB."""

    def __init__(self, name: str, paths: list[str]) -> None:
        if not paths:
            raise InputError(f"{name} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        self.name = name
        self.paths = PathTable(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return _open_rgb(self.paths[index])


def frame_folder(path: Path) -> ImageFiles:
    """Every image below ``path`` (recursively), in sorted order."""
    files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return ImageFiles(str(path), files)


def frame_list(path: Path) -> ImageFiles:
    """A ``.txt`` (one path a line) or ``.csv`` (a ``path``/``image``/``frame`` column, else the
    first column) of frame paths; relative paths are relative to the list's folder.

    SimCLR tutorials' ``<path>,<label>`` lists (no header) read as the first column: the label
    is for downstream tasks and pretraining ignores it."""
    root = path.parent
    if path.suffix.lower() == ".csv":
        with io.StringIO(read_user_text(path), newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise InputError(f"frame list {path} is empty.")
        header = [h.strip().lower() for h in rows[0]]
        column = next((header.index(c) for c in LIST_COLUMNS if c in header), None)
        body = rows[1:] if column is not None else rows
        names = [r[column or 0].strip() for r in body if r and r[column or 0].strip()]
    else:
        names = [line.strip() for line in read_user_text(path).splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    return ImageFiles(str(path), [str((root / n) if not Path(n).is_absolute() else Path(n)) for n in names])


class VideoFrames:
    """Frames of one or more videos sampled at ``fps``, decoded on demand by seeking.

    Videos that cannot be read are skipped with a warning and counted in ``unreadable``; only a
    source with no readable frame at all is an error.
    """

    def __init__(self, path: Path, fps: float, max_open: int = 4) -> None:
        self.name = str(path)
        self.fps = check_fps(fps)
        found = list_videos(path)
        if not found:
            raise InputError(f"{path} holds no videos ({', '.join(VIDEO_EXTENSIONS)}).")
        videos, counts = _readable_videos(found, self.fps)
        self.unreadable = len(found) - len(videos)  # videos skipped because they cannot be read
        if self.unreadable:
            logger.warning("%s: skipped %d unreadable video(s) of %d", path, self.unreadable, len(found))
        if not videos:
            raise InputError(f"no video in {path} could be read (see the warnings above); "
                             "check that they are complete videos that ffmpeg can play.")
        if sum(counts) == 0:
            raise InputError(f"the videos in {path} hold no frame to sample at {self.fps} fps (zero length).")
        self.videos = PathTable([str(v) for v in videos])
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._open: OrderedDict[int, object] = OrderedDict()
        self._max_open = max_open

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[str, float]:
        """The video and the time in seconds of frame ``index``."""
        v = int(np.searchsorted(self._starts, index, side="right") - 1)
        return self.videos[v], (index - self._starts[v]) / self.fps

    def load(self, index: int) -> Image.Image:
        v = int(np.searchsorted(self._starts, index, side="right") - 1)
        container = self._container(v)
        return read_frame_at(container, (index - self._starts[v]) / self.fps).convert("RGB")

    def _container(self, v: int):
        # A few containers stay open per worker: consecutive samples often come from one video.
        if v in self._open:
            self._open.move_to_end(v)
            return self._open[v]
        import av

        container = av.open(self.videos[v])
        self._open[v] = container
        while len(self._open) > self._max_open:
            self._open.popitem(last=False)[1].close()
        return container

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # open containers do not cross process boundaries
        return state


def _readable_videos(videos: list[Path], fps: float) -> tuple[list[Path], list[int]]:
    """The videos whose length can be read and their sample counts; warns about each other one."""
    kept, counts = [], []
    for video in videos:
        try:
            counts.append(num_samples(video_duration(video), fps))
        except UnreadableVideoError as exc:
            logger.warning("skipping an unreadable video: %s", exc)  # the message names the file
            continue
        kept.append(video)
    return kept, counts


def open_source(path: str | Path, fps: float = 1.0) -> FrameSource:
    """The source at ``path``: a video or folder of videos, a frame list, or a folder of images."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"data path {path} does not exist.")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".txt"):
            return frame_list(path)
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return VideoFrames(path, fps)
        raise InputError(f"{path} is neither a frame list (.csv/.txt) nor a video ({', '.join(VIDEO_EXTENSIONS)}).")
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.rglob("*")):
        return frame_folder(path)
    if list_videos(path):
        return VideoFrames(path, fps)
    raise InputError(f"folder {path} holds neither images nor videos.")
