"""Images in, RGB uint8 arrays out: paths, PIL images and numpy arrays, checked and converted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..exceptions import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ImageLike = Union[str, Path, Image.Image, np.ndarray]


def read_image(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3); EXIF orientation applied."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            image = ImageOps.exif_transpose(img)
    except FileNotFoundError as exc:
        raise InputError(f"image {path} does not exist.") from exc
    except Image.DecompressionBombError as exc:  # not an OSError: would escape a folder run otherwise
        raise InputError(f"cannot read image {path}: {exc}. Downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS "
                         "if the file is trusted.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}. Check that the file is a complete PNG/JPEG.") from exc
    # Outside the try: its InputError (a ValueError) says the fix and must not be re-worded as a read error.
    return pil_to_rgb(image)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image as RGB uint8; grayscale, palette and alpha images are converted (alpha dropped)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise InputError(f"image mode {img.mode} (16-bit or float) is not an 8-bit RGB frame; convert it "
                         "to 8-bit RGB first, e.g. with the scaling your data needs.")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """A numpy image as RGB uint8 (H, W, 3): (H, W) and (H, W, 1) grayscale and (H, W, 4) RGBA are converted."""
    if arr.dtype != np.uint8:
        raise InputError(f"expected a uint8 image array, got dtype {arr.dtype}. Convert with "
                         "(x * 255).round().clip(0, 255).astype(np.uint8) for [0, 1] floats.")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if arr.shape[2] == 1:
            return np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3])
    channels_first = arr.ndim == 3 and arr.shape[0] in (1, 3, 4)
    hint = " It looks channels-first; use arr.transpose(1, 2, 0)." if channels_first else ""
    raise InputError(f"expected an image array (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grayscale, got shape "
                     f"{arr.shape}.{hint}")


def as_rgb_array(image: Any) -> np.ndarray:
    """Any supported image (path, PIL image, numpy array) as an RGB uint8 array (H, W, 3)."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    if type(image).__module__.startswith("torch"):
        raise InputError("got a torch tensor; the Predictor and transforms take images (path, PIL, numpy "
                         "uint8 HWC RGB). A normalised NCHW tensor goes straight to model(x).")
    raise InputError(f"cannot use a {type(image).__name__} as an image; pass a path, a PIL image or a numpy "
                     "uint8 array (H, W, 3) in RGB order.")


def _natural_key(path: Path) -> list:
    # frame_2 before frame_10: the order of extracted video frames.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files of ``folder`` in natural order (frame_2 before frame_10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder.")
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_natural_key)
