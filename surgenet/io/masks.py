"""Reading label masks (PNG files of class or object ids), the one decoder every reader uses.

A label file is read as stored, never converted by colour: converting a palette or 16-bit mask
to RGB or grey would change its ids. The two readings differ only in what they accept:
:func:`read_index_mask` wants class ids in one channel (or three identical channels, as the
Endoscapes ``semseg/`` masks store them); callers with their own rules (the first-frame masks
of tracking, CholecSeg8k's watershed colours) start from :func:`read_label_image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exceptions import InputError

# The label of pixels without a class (unlabelled, ambiguous): losses and metrics skip it.
IGNORE_INDEX = 255


def read_label_image(path: str | Path, mode: str | None = None) -> tuple[np.ndarray, str]:
    """The pixel array of the label file ``path`` and its PIL mode (converted to ``mode`` if given);
    a missing, truncated or undecodable file is an :class:`InputError` naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            stored = img.mode
            array = np.asarray(img.convert(mode) if mode else img)
    except FileNotFoundError as exc:
        raise InputError(f"mask {path} does not exist.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read mask {path}: {exc}. Check that the file is a complete PNG.") from exc
    return array, stored


def read_index_mask(path: str | Path) -> np.ndarray:
    """A one-channel class-index PNG as uint8 ``(H, W)``; a three-channel mask must repeat one
    channel (Endoscapes ``semseg/`` masks do), anything else is an InputError naming the file."""
    array, mode = read_label_image(path)
    if mode in ("L", "P", "1") and array.ndim == 2:
        return array.astype(np.uint8, copy=False)
    if mode in ("I;16", "I") and array.ndim == 2 and array.max(initial=0) <= 255:
        return array.astype(np.uint8)
    if array.ndim == 3 and array.shape[2] in (3, 4) and mode in ("RGB", "RGBA"):
        first = array[..., 0]
        if np.array_equal(first, array[..., 1]) and np.array_equal(first, array[..., 2]):
            return first.astype(np.uint8, copy=False)
    raise InputError(f"mask {path} (mode {mode}) is not a class-index mask: it needs one channel of class ids "
                     "(or three identical channels).")


__all__ = ["IGNORE_INDEX", "read_index_mask", "read_label_image"]
