"""Training views of labelled frames: one random geometry applied to the frame and its mask alike.

A view is a random crop (a share ``scale`` of the frame's area, its aspect ratio within
``ratio`` of the frame's own), resized to the model's input size, flipped left-right half of the
time. The frame is resized bilinearly with antialiasing, exactly as :class:`surgenet.transforms.ImageTransform`
does at inference (where the whole frame is resized to the input size whatever its aspect ratio,
as the authors trained); the mask takes the same crop and flip and is resized with nearest
neighbour, so every label stays on its pixel. Colour jitter (brightness, contrast, saturation)
touches the frame only. Frames of any size and aspect ratio work: the crop box is computed in the
frame's own pixels.

Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``: a view depends only on
those three numbers, so a resumed run sees the same views, whatever the worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class ViewParams:
    """The geometry and colour of one view (pixels of the source frame)."""

    top: int
    left: int
    height: int
    width: int
    flip: bool
    brightness: float
    contrast: float
    saturation: float


def image_to_tensor(image) -> torch.Tensor:
    """A PIL image or ``(H, W, 3)`` uint8 array as a float ``(3, H, W)`` tensor in 0..1."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    return torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)


def resize_image(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(3, H, W)`` float -> ``(3, *size)``, bilinear with antialiasing (as ImageTransform)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False, antialias=True)[0]


def resize_mask(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a class-id mask to ``size`` (H, W); ids up to 255 survive."""
    if tuple(mask.shape) == tuple(size):
        return np.asarray(mask, dtype=np.int64)
    if mask.min() < 0 or mask.max() > 255:
        raise ValueError("class-id masks hold ids 0..255 (255 = ignore).")
    small = Image.fromarray(mask.astype(np.uint8)).resize((int(size[1]), int(size[0])), Image.Resampling.NEAREST)
    return np.asarray(small, dtype=np.int64)


def colour_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """torchvision's brightness / contrast / saturation factors on a 0..1 ``(3, H, W)`` tensor."""
    x = x * brightness
    gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])
    x = (x - gray.mean()) * contrast + gray.mean()
    gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
    x = (x - gray) * saturation + gray
    return x.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class SegmentationAugment:
    """Random scale-crop, flip and colour jitter; ``__call__(image, mask, rng)`` -> float image
    ``(3, *size)`` in 0..1 (not normalised) and an int64 mask ``size``, aligned pixel for pixel."""

    size: tuple[int, int]
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.2  # brightness, contrast and saturation factors drawn from 1 +- jitter

    def sample(self, height: int, width: int, rng: np.random.Generator) -> ViewParams:
        """A crop box inside an ``height x width`` frame (whole frame if no box fits in 10 tries)."""
        area = height * width
        box = (0, 0, height, width)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = (width / height) * math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                box = (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
                break
        j = self.jitter
        return ViewParams(*box, flip=bool(rng.random() < self.flip), brightness=float(rng.uniform(1 - j, 1 + j)),
                          contrast=float(rng.uniform(1 - j, 1 + j)), saturation=float(rng.uniform(1 - j, 1 + j)))

    def apply(self, image: torch.Tensor, mask: np.ndarray, p: ViewParams) -> tuple[torch.Tensor, np.ndarray]:
        """The view ``p`` of a 0..1 image ``(3, H, W)`` and its ``(H, W)`` mask."""
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise ValueError(f"image {tuple(image.shape[-2:])} and mask {mask.shape} differ in size.")
        image = image[:, p.top:p.top + p.height, p.left:p.left + p.width]
        mask = mask[p.top:p.top + p.height, p.left:p.left + p.width]
        image = resize_image(image, self.size)
        mask = resize_mask(mask, self.size)
        if p.flip:
            image, mask = image.flip(-1), np.ascontiguousarray(mask[:, ::-1])
        if self.jitter:
            image = colour_jitter(image, p.brightness, p.contrast, p.saturation)
        return image, mask

    def __call__(self, image, mask: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        x = image if isinstance(image, torch.Tensor) else image_to_tensor(image)
        return self.apply(x, np.asarray(mask), self.sample(x.shape[-2], x.shape[-1], rng))
