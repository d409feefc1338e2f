"""The pretraining dataset: a slot of the run becomes its list of augmented crops.

Each slot's augmentation draws from a generator seeded by (seed, epoch, position), never from a
global random state, so crops do not depend on worker count, process count or restarts.
Unreadable frames are skipped (the next frame of the mixture takes their place) and counted.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ...exceptions import InputError
from .mixture import Mixture
from .sampler import Slot

logger = logging.getLogger(__name__)

# What a broken frame raises: PIL (OSError covers UnidentifiedImageError and truncation),
# PyAV (its errors derive from OSError/ValueError), decoders that hit odd data.
READ_ERRORS = (OSError, ValueError, SyntaxError, IndexError, EOFError)
MAX_CONSECUTIVE_SKIPS = 64


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
        image, skipped = load_skipping(self.mixture, frame_id)
        rng = np.random.default_rng([self.seed, epoch, position])
        return self.transform(image, rng), skipped


def load_skipping(frames, frame_id: int) -> tuple[Image.Image, int]:
    """Load ``frame_id``, or the first readable frame after it; returns it and the skip count."""
    n = len(frames)
    for skipped in range(min(n, MAX_CONSECUTIVE_SKIPS)):
        index = (frame_id + skipped) % n
        try:
            return frames.load(index), skipped
        except READ_ERRORS as exc:
            logger.warning("skipping unreadable frame %s: %s", _describe(frames, index), exc)
    raise InputError(f"{MAX_CONSECUTIVE_SKIPS} consecutive frames could not be read (from frame {frame_id}); "
                     "check the data paths and that the files are images or videos PIL/PyAV can decode.")


def _describe(frames, index: int) -> str:
    if isinstance(frames, Mixture):
        k, i = frames.locate(index)
        source = frames.sources[k]
        paths = getattr(source, "paths", None)
        return paths[i] if paths is not None else f"{source.name}[{i}]"
    return str(index)


def collate_crops(batch: Sequence[tuple[list[torch.Tensor], int]]) -> tuple[list[torch.Tensor], int]:
    """Stack crop ``v`` of every sample into one tensor per crop; sum the skip counts."""
    crops = [torch.stack([sample[0][v] for sample in batch]) for v in range(len(batch[0][0]))]
    return crops, sum(sample[1] for sample in batch)
