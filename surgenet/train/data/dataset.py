"""The pretraining dataset: a slot of the run becomes its list of augmented crops.

Each slot's augmentation draws from a generator seeded by (seed, epoch, position), never from a
global random state, so crops do not depend on worker count, process count or restarts.
Unreadable frames are skipped and counted: another frame of the same source takes their place,
chosen from nothing but the seed and the frame id, so a resumed run loads the same frames.
"""

from __future__ import annotations

import logging
import math
from functools import cache
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ...exceptions import InputError
from .mixture import Mixture
from .sampler import Slot

logger = logging.getLogger(__name__)

# What a broken frame raises: PIL (OSError covers UnidentifiedImageError and truncation),
# decoders that hit odd data, and PyAV (see _read_errors: not all its errors are OSError/ValueError).
READ_ERRORS = (OSError, ValueError, SyntaxError, IndexError, EOFError)
NEXT_FRAMES = 8  # tried in order after an unreadable frame, before jumping across the source
LOGGED_SKIPS = 8  # skips logged one by one per sample; a wholly broken source would flood the log


class MultiCropDataset(torch.utils.data.Dataset):
    """``dataset[slot] -> (crops, skipped)``; ``skipped`` counts unreadable frames passed over."""

    def __init__(self, mixture: Mixture, transform: Callable[[Image.Image, np.random.Generator], list[torch.Tensor]],
                 seed: int = 0) -> None:
        self.mixture = mixture
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.mixture)

    def __getitem__(self, slot: Slot) -> tuple[list[torch.Tensor], int]:
        frame_id, epoch, position = slot
        image, skipped = load_skipping(self.mixture, frame_id, self.seed)
        rng = np.random.default_rng([self.seed, epoch, position])
        return self.transform(image, rng), skipped


@cache
def _read_errors() -> tuple[type[BaseException], ...]:
    try:
        from av.error import FFmpegError
    except ImportError:  # pragma: no cover - av is part of the train extra
        return READ_ERRORS
    return READ_ERRORS + (FFmpegError,)


def load_skipping(frames, frame_id: int, seed: int = 0) -> tuple[Image.Image, int]:
    """Load ``frame_id``, or else a readable frame of the same source; returns it and the skip count.

    After an unreadable frame come the next few frames, then every other frame of the source
    once, in a stride order seeded by ``(seed, frame_id)``: a long run of broken files is crossed
    in a few tries, the replacement depends only on the data, the seed and ``frame_id`` (a resumed
    run loads the same frames), and only a source without one readable frame is an error. Within
    a :class:`Mixture` the replacement stays in ``frame_id``'s source, so the weights hold.
    """
    first, size, name = _source_range(frames, frame_id)
    skipped = 0
    for index in fallback_order(frame_id - first, size, [seed, frame_id]):
        try:
            image = frames.load(first + index)
        except _read_errors() as exc:
            if skipped < LOGGED_SKIPS:
                logger.warning("skipping unreadable frame %s: %s", _describe(frames, first + index), exc)
            skipped += 1
            continue
        if skipped > LOGGED_SKIPS:
            logger.warning("skipped %d unreadable frames of %s before a readable one (from frame %d)",
                           skipped, name, frame_id)
        return image, skipped
    raise InputError(f"none of the {size} frames of {name} can be read, so it gives no training images; "
                     "check that its files are images or videos that PIL/PyAV can decode, or remove it from --data.")


def fallback_order(start: int, size: int, seed: Sequence[int]) -> Iterator[int]:
    """Every index of ``range(size)`` once: ``start`` and the few after it, then the rest along a
    stride coprime with ``size`` drawn from ``seed``, so a run of broken neighbours is jumped over."""
    near = min(size, NEXT_FRAMES + 1)
    for j in range(near):
        yield (start + j) % size
    if near == size:
        return
    step = _coprime_step(size, np.random.default_rng(list(seed)))
    for j in range(1, size):
        offset = j * step % size  # j * step for j < size visits every residue once
        if offset >= near:
            yield (start + offset) % size


def _coprime_step(size: int, rng: np.random.Generator) -> int:
    step = int(rng.integers(1, size))
    while math.gcd(step, size) != 1:
        step = step % (size - 1) + 1
    return step


def _source_range(frames, frame_id: int) -> tuple[int, int, str]:
    """First global id, size and name of the source that holds ``frame_id``."""
    if isinstance(frames, Mixture):
        k, _ = frames.locate(frame_id)
        return int(frames.offsets[k]), int(frames.sizes[k]), frames.sources[k].name
    return 0, len(frames), getattr(frames, "name", "the data")


def _describe(frames, index: int) -> str:
    if isinstance(frames, Mixture):
        k, i = frames.locate(index)
        source = frames.sources[k]
        paths = getattr(source, "paths", None)
        if paths is not None:
            return paths[i]
        if hasattr(source, "locate"):  # videos: the file and the time
            video, t = source.locate(i)
            return f"{video} at {t:.3f} s"
        return f"{source.name}[{i}]"
    return str(index)


def collate_crops(batch: Sequence[tuple[list[torch.Tensor], int]]) -> tuple[list[torch.Tensor], int]:
    """Stack crop ``v`` of every sample into one tensor per crop; sum the skip counts."""
    crops = [torch.stack([sample[0][v] for sample in batch]) for v in range(len(batch[0][0]))]
    return crops, sum(sample[1] for sample in batch)
