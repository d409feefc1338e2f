"""Real frames as the exported graph takes them: for int8 calibration and fidelity checks.

A frame is resized to the export size (bilinear) and normalised with the config's mean/std
(for graphs with baked preprocessing those are 0 and 1, i.e. RGB in 0..1), as the Predictor
feeds a runner at that size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from surgenet.exceptions import InputError
from surgenet.io.images import IMAGE_EXTENSIONS, read_image


def image_files(folder: str | Path) -> list[Path]:
    """The images of ``folder`` (or of its ``images/`` subfolder, as in a segmentation dataset), sorted."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"there is no folder {folder}; pass a folder of frames (JPEG/PNG), or a dataset folder "
                         "with images/.")
    if (folder / "images").is_dir():
        folder = folder / "images"
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise InputError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); pass a folder of frames.")
    return files


def preprocess(image: np.ndarray, hw: Sequence[int], config: Mapping[str, Any]) -> np.ndarray:
    """An RGB uint8 frame (H, W, 3) as a (1, 3, h, w) float32 graph input, by the Predictor's own
    preprocessing (:class:`surgenet.transforms.ImageTransform`)."""
    from surgenet.transforms import ImageTransform

    x = ImageTransform((int(hw[0]), int(hw[1])), config["mean"], config["std"])(image)
    return np.ascontiguousarray(x.numpy()[None], dtype=np.float32)


def load_frames(files: Sequence[Path], hw: Sequence[int], config: Mapping[str, Any]) -> list[np.ndarray]:
    """Each file as a (1, 3, h, w) graph input."""
    return [preprocess(read_image(f), hw, config) for f in files]
