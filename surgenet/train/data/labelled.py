"""Labelled datasets for fine-tuning, in three documented formats.

* Segmentation: a folder with ``images/`` and ``masks/``; each mask is a PNG with the image's
  stem (``images/a.jpg`` -> ``masks/a.png``) holding one class index per pixel, 255 = ignore.
* Phase: a folder of per-video CSV files (or one CSV), columns ``frame,phase``, one row per
  frame in temporal order; ``frame`` is a path relative to the CSV, ``phase`` an index or a name.
* CVS: a CSV with columns ``image,c1,c2,c3`` (paths relative to the CSV; per-criterion
  probabilities or 0/1 labels).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ...exceptions import InputError
from .sources import IMAGE_EXTENSIONS

IGNORE_INDEX = 255


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not set(required) <= set(rows[0]):
        raise InputError(f"{path} needs a header with the columns {','.join(required)}.")
    return rows


class SegmentationFrames(torch.utils.data.Dataset):
    """``(image tensor, mask int64 tensor)`` pairs; masks resized with nearest neighbour."""

    def __init__(self, root: str | Path, transform: Callable, size: Sequence[int], flip: bool = False,
                 seed: int = 0) -> None:
        root = Path(root).expanduser()
        images, masks = root / "images", root / "masks"
        if not images.is_dir() or not masks.is_dir():
            raise InputError(f"{root} must hold images/ and masks/ (PNG class-index masks with the image stems).")
        self.images = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        missing = [p.name for p in self.images if not (masks / f"{p.stem}.png").is_file()]
        if missing or not self.images:
            raise InputError(f"{root}: {len(missing)} images lack a mask in masks/ (e.g. {missing[:3]})"
                             if missing else f"{root}/images holds no images.")
        self.masks = [masks / f"{p.stem}.png" for p in self.images]
        self.transform, self.size, self.flip, self.seed = transform, (int(size[0]), int(size[1])), flip, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.transform(self.images[index])
        with Image.open(self.masks[index]) as m:
            mask = np.array(m.resize(self.size[::-1], Image.Resampling.NEAREST), dtype=np.int64)
        if mask.ndim != 2:
            raise InputError(f"{self.masks[index]} is not a single-channel class-index mask.")
        mask = torch.from_numpy(mask)
        if self.flip and np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


class CVSFrames(torch.utils.data.Dataset):
    """``(image tensor, float targets (3,))`` from an ``image,c1,c2,c3`` CSV."""

    COLUMNS = ("image", "c1", "c2", "c3")

    def __init__(self, csv_path: str | Path, transform: Callable, flip: bool = False, seed: int = 0) -> None:
        path = Path(csv_path).expanduser()
        rows = _read_csv(path, self.COLUMNS)
        self.paths = [path.parent / r["image"] for r in rows]
        try:
            self.targets = torch.tensor([[float(r[c]) for c in self.COLUMNS[1:]] for r in rows])
        except ValueError as exc:
            raise InputError(f"{path}: c1,c2,c3 must be numbers (0/1 or probabilities): {exc}") from exc
        self.transform, self.flip, self.seed, self.epoch = transform, flip, seed, 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.transform(self.paths[index])
        if self.flip and np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5:
            image = image.flip(-1)
        return image, self.targets[index]


@dataclass
class PhaseVideo:
    name: str
    frames: list[Path]
    phases: np.ndarray  # int64 per frame


def read_phase_videos(path: str | Path, class_names: Sequence[str] | None = None) -> list[PhaseVideo]:
    """Per-video ``frame,phase`` CSVs of a folder (sorted by name), or a single CSV."""
    path = Path(path).expanduser()
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise InputError(f"{path} holds no per-video CSV files with columns frame,phase.")
    index = {n: i for i, n in enumerate(class_names)} if class_names else {}
    videos = []
    for f in files:
        rows = _read_csv(f, ("frame", "phase"))
        phases = []
        for r in rows:
            value = r["phase"].strip()
            if value in index:
                phases.append(index[value])
            elif value.lstrip("-").isdigit():
                phases.append(int(value))
            else:
                raise InputError(f"{f}: phase {value!r} is neither an index nor one of --class-names.")
        videos.append(PhaseVideo(f.stem, [f.parent / r["frame"] for r in rows], np.asarray(phases, np.int64)))
    return videos


class PhaseClips(torch.utils.data.Dataset):
    """Clips of ``length`` consecutive frames (end-to-end phase training): ``(T,3,H,W)``, ``(T,)``."""

    def __init__(self, videos: Sequence[PhaseVideo], transform: Callable, length: int) -> None:
        self.videos, self.transform, self.length = list(videos), transform, length
        self.starts = [(v, s) for v, video in enumerate(self.videos)
                       for s in range(0, max(len(video.frames) - length, 0) + 1, max(length // 2, 1))]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, start = self.starts[index]
        video = self.videos[v]
        stop = min(start + self.length, len(video.frames))
        frames = torch.stack([self.transform(p) for p in video.frames[start:stop]])
        return frames, torch.from_numpy(video.phases[start:stop])
