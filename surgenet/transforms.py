"""Preprocessing that matches the weights: RGB uint8 frame -> normalised float CHW tensor.

Frames are resized (bilinear, antialiased) to the model's input size without keeping the
aspect ratio, as the authors trained (e.g. 640x360 and 1920x1080 frames both become 256x256);
the Predictor resizes the outputs back to each frame's own size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .exceptions import InputError
from .io import as_rgb_array
from .io.text import read_user_text
from .zoo.registry import get_entry


class ImageTransform:
    """``transform(image) -> (3, H, W)`` float tensor; ``transform.batch(images) -> (N, 3, H, W)``.

    Accepts a path, a PIL image or a numpy uint8 array (H, W, 3) RGB; grayscale, palette and
    RGBA images are converted to RGB.
    """

    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError(f"mean and std need three values each, std > 0; got {mean}, {std}.")
        self._mean = torch.tensor(self.mean).view(3, 1, 1)
        self._std = torch.tensor(self.std).view(3, 1, 1)

    def __call__(self, image: Any) -> torch.Tensor:
        arr = as_rgb_array(image)
        # Arrays from PIL are read-only views; torch.from_numpy would warn on them (and could alias
        # memory it must not write), so copy those, and anything non-contiguous, once.
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr, copy=True, order="C")
        x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return (x[0] - self._mean) / self._std

    def batch(self, images: Iterable[Any]) -> torch.Tensor:
        return torch.stack([self(img) for img in images])

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size}, mean={self.mean}, std={self.std})"


def _config_of(model_or_name: Any) -> dict[str, Any]:
    if isinstance(model_or_name, dict):
        return model_or_name
    config = getattr(model_or_name, "config", None)
    if isinstance(config, dict):
        return config
    if isinstance(model_or_name, (str, Path)):
        folder = Path(model_or_name).expanduser()
        if folder.is_dir() and (folder / "config.json").is_file():
            return json.loads(read_user_text(folder / "config.json"))
        entry = get_entry(str(model_or_name))
        return {"backbone": entry.name, "mean": list(entry.mean), "std": list(entry.std),
                "input_size": list(entry.input_size)}
    raise InputError(f"create_transform takes a surgenet model, a zoo name, a saved folder or a config dict, "
                     f"not {type(model_or_name).__name__}. For a FeatureBackbone pass its zoo name.")


def create_transform(model_or_name: Any, normalization: str | None = None,
                     size: int | Sequence[int] | None = None) -> ImageTransform:
    """The preprocessing that matches ``model_or_name``'s weights.

    Args:
        model_or_name: a task model (its config decides), a zoo name, a saved folder, or a config
            dict with ``mean``, ``std`` and ``input_size`` (as exported runners carry).
        normalization: ``None`` keeps the model's own; ``"default"`` (pretraining statistics) or
            ``"surgical"`` (the authors' downstream statistics) override it.
        size: output size, ``int`` or ``(H, W)``; default the model's input size.
    """
    config = _config_of(model_or_name)
    try:
        mean, std = config["mean"], config["std"]
        input_size = config["input_size"]
    except KeyError as exc:
        raise InputError(f"the config lacks {exc}; it needs mean, std and input_size.") from exc
    if normalization is not None:
        if "backbone" not in config:
            raise InputError("normalization= needs a zoo model to look the statistics up; set mean/std in the config.")
        from .models.base import resolve_normalization

        mean, std = resolve_normalization(get_entry(config["backbone"]), normalization)
    if size is None:
        hw = tuple(input_size[-2:])
    elif isinstance(size, int):
        hw = (size, size)
    else:
        hw = tuple(size)
    if len(hw) != 2 or min(hw) < 1:
        raise InputError(f"size must be a positive int or (H, W), got {size}.")
    return ImageTransform(hw, mean, std)
