"""DINO multi-crop augmentation, driven by an explicit random generator.

The operations and their parameters are those of DINO (v1), used for every SurgeNet model:
random resized crops (bicubic), horizontal flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8,
grayscale with p 0.2, Gaussian blur (radius 0.1 to 2) with p 1.0 / 0.1 / 0.5 for the first global,
second global and local crops, solarisation with p 0.2 on the second global crop, then
normalisation. They are written on PIL images here, drawing every random number from the
``numpy.random.Generator`` passed in, so a crop is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

RATIO = (3 / 4, 4 / 3)


def random_resized_crop(image: Image.Image, size: int, scale: Sequence[float], rng: np.random.Generator) -> Image.Image:
    """A crop covering ``scale`` of the area at aspect ratio 3/4 to 4/3, resized to ``size`` (bicubic)."""
    width, height = image.size
    area = width * height
    box = None
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:  # fall back to the largest centred crop within the ratio range
        ratio = width / height
        w, h = (width, height)
        if ratio < RATIO[0]:
            h = int(round(width / RATIO[0]))
        elif ratio > RATIO[1]:
            w = int(round(height * RATIO[1]))
        left, top = (width - w) // 2, (height - h) // 2
        box = (left, top, left + w, top + h)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


def _shift_hue(image: Image.Image, factor: float) -> Image.Image:
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(factor * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def color_jitter(image: Image.Image, rng: np.random.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.2, hue: float = 0.1) -> Image.Image:
    """Brightness, contrast, saturation and hue changes in a random order."""
    factors = (rng.uniform(1 - brightness, 1 + brightness), rng.uniform(1 - contrast, 1 + contrast),
               rng.uniform(1 - saturation, 1 + saturation), rng.uniform(-hue, hue))
    for op in rng.permutation(4):
        if op == 0:
            image = ImageEnhance.Brightness(image).enhance(factors[0])
        elif op == 1:
            image = ImageEnhance.Contrast(image).enhance(factors[1])
        elif op == 2:
            image = ImageEnhance.Color(image).enhance(factors[2])
        else:
            image = _shift_hue(image, factors[3])
    return image


@dataclass(frozen=True)
class CropSpec:
    """One view: crop size and area range, then the photometric changes and their probabilities.

    The defaults are DINO's (and BYOL's paper); the other methods' recipes set their own.
    """

    size: int
    scale: tuple[float, float]
    blur_p: float
    solarize_p: float = 0.0
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2


class MultiCrop:
    """``MultiCrop(...)(image, rng)`` returns the crops: 2 global views, then the local views."""

    def __init__(self, global_size: int = 224, local_size: int = 96, global_scale: Sequence[float] = (0.4, 1.0),
                 local_scale: Sequence[float] = (0.05, 0.4), local_crops: int = 8,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 specs: Sequence[CropSpec] | None = None) -> None:
        g, loc = tuple(global_scale), tuple(local_scale)
        if specs is not None:  # another method's views (BYOL, SimCLR, MSN), same operations
            self.specs = list(specs)
        else:
            self.specs = [CropSpec(global_size, g, 1.0), CropSpec(global_size, g, 0.1, 0.2)]
            self.specs += [CropSpec(local_size, loc, 0.5)] * local_crops
        self.mean = np.asarray(mean, dtype=np.float32) * 255
        self.std = np.asarray(std, dtype=np.float32) * 255

    @property
    def num_crops(self) -> int:
        return len(self.specs)

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> list[torch.Tensor]:
        return [self.view(image, spec, rng) for spec in self.specs]

    def view(self, image: Image.Image, spec: CropSpec, rng: np.random.Generator) -> torch.Tensor:
        crop = random_resized_crop(image, spec.size, spec.scale, rng)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < spec.jitter_p:
            crop = color_jitter(crop, rng, *spec.jitter)
        if rng.random() < spec.gray_p:
            crop = crop.convert("L").convert("RGB")
        if rng.random() < spec.blur_p:
            crop = crop.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
        if spec.solarize_p and rng.random() < spec.solarize_p:
            crop = ImageOps.solarize(crop, threshold=128)
        array = (np.asarray(crop, dtype=np.float32) - self.mean) / self.std
        return torch.from_numpy(array.transpose(2, 0, 1).copy())
