"""What every dataset reader shares: the ``RawDataset`` contract and the checks of label files.

A reader checks every label file in its constructor (before any training starts) and raises an
:class:`~surgenet.exceptions.InputError` naming the file and the line or entry at fault. Items are
``(PIL RGB image, target)``:

* segmentation: ``np.ndarray`` int64 ``(H, W)`` at the image's own size, 255 = ignore;
* cvs: ``np.ndarray`` float32 ``(3,)``, the mean of the annotators' votes (0..1);
* tools: ``np.ndarray`` float32 ``(num_tools,)``, multi-hot;
* phase: ``int``.

Images are read as stored (no EXIF rotation), so that masks stay aligned with their pixels.
"""

from __future__ import annotations

import abc

import csv
import io
import logging
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ...exceptions import InputError
from ...io.images import IMAGE_EXTENSIONS
from ...io.masks import IGNORE_INDEX, read_index_mask
from ...io.text import decode_user_text, read_user_text
from ...tasks import TASKS

logger = logging.getLogger(__name__)


def load_rgb(path: Path) -> Image.Image:
    """An image file as a loaded PIL RGB image; an unreadable file is an InputError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB") if img.mode != "RGB" else img.copy()
    except FileNotFoundError as exc:
        raise InputError(f"image {path} does not exist.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}. Check that the file is a complete image.") from exc


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as exc:
        raise InputError(f"image {path} does not exist.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}. Check that the file is a complete image.") from exc


def require_file(path: Path, where: str) -> Path:
    """``path`` if it is a file; else an InputError saying which label entry (``where``) names it."""
    if not path.is_file():
        raise InputError(f"{where}: image {path} does not exist; fix the entry or restore the file.")
    return path


def check_task(format_name: str, task: str, tasks: Sequence[str]) -> None:
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if task not in tasks:
        raise InputError(f"the {format_name} format has no labels for the {task} task (it serves: "
                         f"{', '.join(tasks)}); pick another dataset or task.")


def read_delimited(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-blank row of a CSV/TSV file (1-based line numbers)."""
    if not path.is_file():
        raise InputError(f"label file {path} does not exist.")
    try:
        with io.StringIO(read_user_text(path), newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for fields in reader:
                if fields and any(x.strip() for x in fields):
                    yield reader.line_num, [x.strip() for x in fields]
    except csv.Error as exc:
        raise InputError(f"{path} is not a readable text {('CSV' if delimiter == ',' else 'TSV')} file: {exc}.") \
            from exc


def read_header(path: Path, delimiter: str = ",") -> list[str]:
    """The first row of a CSV/TSV file, lower-cased (empty if unreadable or empty).

    Only the first line is decoded: a body in another encoding is reported by :func:`read_delimited`
    with its offset, not taken here for a file without the header.
    """
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 16)
        row = next(csv.reader([decode_user_text(first, path)], delimiter=delimiter), [])
    except (OSError, csv.Error):
        return []
    return [x.strip().lower() for x in row]


def parse_float(text: str, where: str, low: float = 0.0, high: float = 1.0) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also rejects nan
        raise InputError(f"{where}: {text!r} is not a number in [{low:g}, {high:g}].")
    return value


def parse_int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value.is_integer():
            return int(value)
        raise InputError(f"{where}: {text!r} is not an integer.") from None


class RawDataset(torch.utils.data.Dataset, abc.ABC):
    """Frames with validated labels: ``ds[i] -> (PIL RGB image, target)``.

    Attributes: ``task``, ``class_names``, ``paths`` (the image of each item), ``format``.
    """

    format: str = ""

    def __init__(self, task: str, class_names: Sequence[str], paths: Sequence[Path]) -> None:
        self.task = task
        self.class_names = list(class_names)
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise InputError(f"the {self.format} dataset holds no labelled frames for the {task} task.")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return load_rgb(self.paths[index]), self.target(index)

    @abc.abstractmethod
    def target(self, index: int):
        """The label of item ``index`` (each dataset kind defines it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, items={len(self)}, classes={len(self.class_names)})"


class LabelDataset(RawDataset):
    """Frame-level labels held in one array: ``labels[i]`` is the target of item ``i``."""

    def __init__(self, task: str, class_names: Sequence[str], paths: Sequence[Path], labels: np.ndarray) -> None:
        super().__init__(task, class_names, paths)
        if task == "phase":
            self.labels = np.asarray(labels, dtype=np.int64)
        else:
            self.labels = np.asarray(labels, dtype=np.float32).reshape(len(self.paths), -1)

    def target(self, index: int):
        if self.task == "phase":
            return int(self.labels[index])
        return self.labels[index].copy()


MaskDecoder = Callable[[Path], np.ndarray]


def images_with_masks(root: Path, layout_hint: str) -> tuple[list[Path], list[Path]]:
    """The images of ``root/images`` (sorted) and their ``root/masks/<stem>.png``; a missing folder or
    mask is an InputError naming it (``layout_hint`` says what the layout needs)."""
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError(f"{root} {layout_hint}")
    images = sorted_images(images_dir)
    masks = []
    for image in images:
        mask = masks_dir / f"{image.stem}.png"
        if not mask.is_file():
            raise InputError(f"image {image} has no mask {mask}; add it or remove the image.")
        masks.append(mask)
    return images, masks


class SegmentationDataset(RawDataset):
    """Frames with class-index masks. The constructor reads every mask once: a mask whose size
    differs from its image is an InputError naming both; ids that are neither a class nor 255
    become 255 (ignore), with one warning per dataset naming the files that hold them."""

    def __init__(self, class_names: Sequence[str], paths: Sequence[Path], masks: Sequence[Path],
                 decode: MaskDecoder = read_index_mask, known_values: Sequence[int] | None = None,
                 lut: np.ndarray | None = None, source: str = "") -> None:
        if len(class_names) > IGNORE_INDEX:
            raise InputError(f"a segmentation class list holds at most {IGNORE_INDEX} names (255 is ignore), "
                             f"got {len(class_names)}.")
        super().__init__("segmentation", class_names, paths)
        self.masks = [Path(m) for m in masks]
        self._decode = decode
        if lut is None:
            lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
            lut[: len(self.class_names)] = np.arange(len(self.class_names))
        self._lut = lut  # raw mask value (0..255) -> class id or 255
        allowed = np.zeros(256, dtype=bool)
        allowed[np.flatnonzero(lut != IGNORE_INDEX)] = True
        allowed[IGNORE_INDEX] = True
        for v in known_values or ():  # documented "unlabelled" values: ignored without a warning
            allowed[v] = True
        self._allowed = allowed
        self.unknown_ids = self._scan(source or (str(self.paths[0].parent) if self.paths else ""))

    def _scan(self, source: str) -> dict[Path, list[int]]:
        from tqdm.auto import tqdm

        def check(i: int) -> tuple[int, list[int], np.ndarray]:
            image, mask = self.paths[i], self.masks[i]
            raw = self._decode(mask)
            if (raw.shape[1], raw.shape[0]) != image_size(image):
                w, h = image_size(image)
                raise InputError(f"mask {mask} is {raw.shape[1]}x{raw.shape[0]} but its image {image} is {w}x{h}; "
                                 "a mask must have its image's size.")
            mask_counts = np.bincount(raw.ravel(), minlength=256)
            return i, [int(v) for v in np.flatnonzero(mask_counts) if not self._allowed[v]], mask_counts

        unknown: dict[Path, list[int]] = {}
        counts = np.zeros(256, dtype=np.int64)
        with ThreadPoolExecutor(max_workers=4) as pool:  # PNG decoding releases the GIL
            results = pool.map(check, range(len(self.paths)))
            for i, bad, mask_counts in tqdm(results, total=len(self.paths), desc="checking masks", unit="mask",
                                            disable=len(self.paths) < 500, leave=False):
                counts += mask_counts
                if bad:
                    unknown[self.masks[i]] = bad
        self.value_counts = counts  # pixels per raw mask value, over the whole dataset
        if unknown:
            listed = ", ".join(f"{p.name} ({', '.join(map(str, v))})" for p, v in list(unknown.items())[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            warnings.warn(f"{source}: {len(unknown)} mask(s) hold ids outside the {len(self.class_names)} classes, "
                          f"read as 255 (ignore): {listed}{more}.", stacklevel=_outside_stacklevel())
        return unknown

    def set_class_names(self, names: Sequence[str]) -> None:
        """Shorten the class list of an index-mask dataset to ``names`` once the masks are scanned
        (only for a list that still covers every id present)."""
        present = np.flatnonzero(self.value_counts[:IGNORE_INDEX] * (self._lut[:IGNORE_INDEX] != IGNORE_INDEX))
        if present.size and present.max() >= len(names):
            raise ValueError(f"id {present.max()} is present but the class list has {len(names)} names.")
        self.class_names = list(names)
        self._lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
        self._lut[: len(names)] = np.arange(len(names))

    @property
    def class_pixels(self) -> np.ndarray:
        """Labelled pixels per class over the dataset (int64, ``len(class_names)``): for class weights."""
        out = np.zeros(len(self.class_names), dtype=np.int64)
        valid = self._lut != IGNORE_INDEX
        np.add.at(out, self._lut[valid], self.value_counts[valid])
        return out

    def target(self, index: int) -> np.ndarray:
        return self._lut[self._decode(self.masks[index])]


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this package."""
    package = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def select_videos(available: Sequence[str], wanted: Sequence[str] | None, source: Path) -> list[str]:
    """``available`` (in its order) restricted to ``wanted``; a name not there is an InputError."""
    if wanted is None:
        return list(available)
    missing = [v for v in wanted if v not in available]
    if missing:
        raise InputError(f"{source} has no video {', '.join(missing)}; its videos: {', '.join(available)}.")
    return [v for v in available if v in set(wanted)]


def sorted_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


__all__ = ["IGNORE_INDEX", "LabelDataset", "RawDataset", "SegmentationDataset", "TASKS",
           "check_task", "image_size", "load_rgb", "parse_float", "parse_int", "read_delimited", "read_header",
           "read_index_mask", "require_file", "select_videos", "sorted_images"]
