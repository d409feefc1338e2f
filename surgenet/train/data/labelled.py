"""Labelled samples as tensors for fine-tuning and evaluation, on top of the dataset readers.

The readers (:func:`surgenet.train.formats.open_dataset`) return ``(PIL RGB image, target)``
with labels already validated. This module turns them into what a model eats:

* segmentation: training gives augmented views (:mod:`surgenet.train.seg_augment`) of the input
  size with the aligned mask; evaluation gives the whole frame resized as at inference and the
  mask at the frame's own size (scores are computed at full resolution);
* CVS and tools: the frame resized as at inference (training: flipped half of the time and
  colour-jittered) and the float target vector;
* phase: clips of consecutive frames of a video (end-to-end training).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...exceptions import InputError
from ...io.text import read_user_text
from ..seg_augment import SegmentationAugment, colour_jitter, image_to_tensor, resize_image


class _Normalise:
    def __init__(self, transform) -> None:
        self.mean = torch.tensor(transform.mean).view(3, 1, 1)
        self.std = torch.tensor(transform.std).view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SegmentationSamples(torch.utils.data.Dataset):
    """``(normalised image (3, h, w), int64 mask)`` from a segmentation reader.

    With ``augment`` (training) both are views of the input size; without (evaluation) the image
    is the whole frame through ``transform`` and the mask keeps the frame's size.
    """

    def __init__(self, source, transform, augment: SegmentationAugment | None = None, seed: int = 0) -> None:
        self.source, self.transform, self.augment, self.seed = source, transform, augment, seed
        self.normalise = _Normalise(transform)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.source[index]
        mask = np.asarray(mask, dtype=np.int64)
        if self.augment is None:
            return self.transform(image), torch.from_numpy(mask)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        x, mask = self.augment(image, mask, rng)
        return self.normalise(x), torch.from_numpy(mask)


def collate_masks(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Images stacked (one input size), masks as a list (each at its frame's own size)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class LabelSamples(torch.utils.data.Dataset):
    """``(normalised image, float32 target vector)`` from a CVS or tools reader.

    Training (``train=True``): left-right flip half of the time and colour jitter (``jitter``),
    neither of which changes which criteria hold or which tools are in view.
    """

    def __init__(self, source, transform, train: bool = False, seed: int = 0, jitter: float = 0.2) -> None:
        self.source, self.transform, self.train, self.seed, self.jitter = source, transform, train, seed, jitter
        self.normalise = _Normalise(transform)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.source[index]
        target = torch.as_tensor(np.asarray(target, dtype=np.float32))
        if not self.train:
            return self.transform(image), target
        rng = np.random.default_rng([self.seed, self.epoch, index])
        x = resize_image(image_to_tensor(image), self.transform.size)
        if rng.random() < 0.5:
            x = x.flip(-1)
        j = self.jitter
        factors = rng.uniform(1 - j, 1 + j, size=3)
        if j:
            x = colour_jitter(x, *(float(f) for f in factors))
        return self.normalise(x), target


@dataclass
class PhaseVideo:
    name: str
    frames: list[Path]
    phases: np.ndarray  # int64 per frame


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with io.StringIO(read_user_text(path), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not set(required) <= set(rows[0]):
        raise InputError(f"{path} needs a header with the columns {','.join(required)}.")
    return rows


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

    def __init__(self, videos: Sequence[Any], transform: Callable, length: int) -> None:
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
        return frames, torch.from_numpy(np.asarray(video.phases[start:stop], dtype=np.int64))
