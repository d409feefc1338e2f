"""What a backbone sees: the first three principal components of its patch features as RGB.

The picture foundation-model papers show first (DINOv2, Oquab et al. 2023, fig. 1): patches whose
features are alike get alike colours, so coherent regions (an organ, an instrument) stand out
without any labels. Choices, and why:

* **Exact PCA** (an SVD of the centred ``(patches, channels)`` matrix): a frame has at most a few
  thousand patches, so the SVD costs milliseconds, and unlike ``torch.pca_lowrank`` it is
  deterministic. The sign of each component is fixed (its largest projection is positive), so the
  same frame always gets the same colours.
* **Robust scaling per component**: the 1st and 99th percentiles map to 0 and 1 (clipped), so a
  few outlier patches (specular highlights) do not wash out the rest. A component with no variance
  (below 1e-4 of the first) is drawn as mid-grey rather than stretched noise.
* **Foreground threshold, off by default**: DINOv2 keeps the patches whose first component passes
  a threshold and recomputes the PCA on them, to cut an object out of its background. A surgical
  frame is all scene (only the scope's dark border is not), so surgenet shows every patch unless
  ``foreground`` is given; then patches whose scaled first component is below it are black. With
  the sign convention above, the high side of the first component is the more distinctive
  (smaller) group of patches.
* **Nearest-neighbour upsampling** to the frame's size: each patch is a flat tile, so the picture
  shows the model's true resolution and no colour that no patch has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .exceptions import InputError
from .patch_features import DEFAULT_SHORT_SIDE, FeatureExtractor, load_feature_extractor
from .io import as_rgb_array
from .io.atomic import atomic_target

NEGLIGIBLE = 1e-4  # a component whose singular value is below this fraction of the first has no signal
QUANTILES = (0.01, 0.99)


def pca_rgb(features: torch.Tensor | np.ndarray, foreground: float | None = None,
            quantiles: tuple[float, float] = QUANTILES) -> np.ndarray:
    """The first three principal components of a ``(C, h, w)`` feature map as an ``(h, w, 3)``
    float32 picture in [0, 1] (see the module docstring for the choices).

    Args:
        features: channels first, one map (a backbone's output for one frame).
        foreground: ``None`` shows every patch; a value in (0, 1) keeps the patches whose scaled
            first component reaches it, recomputes the components on them, and draws the rest black.
        quantiles: the percentiles (as fractions) mapped to 0 and 1 for each component.
    """
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 3 or min(x.shape) < 1:
        raise InputError(f"expected one (C, h, w) feature map, got shape {tuple(x.shape)}.")
    if not 0 <= quantiles[0] < quantiles[1] <= 1:
        raise InputError(f"quantiles must satisfy 0 <= low < high <= 1, got {quantiles}.")
    channels, h, w = x.shape
    if not torch.isfinite(x).all():
        raise InputError("the features hold NaN or infinite values; the backbone weights are broken.")
    rows = x.reshape(channels, h * w).T
    colours = _scaled(_components(rows), quantiles)
    if foreground is not None:
        if not 0 < foreground < 1:
            raise InputError(f"foreground must be in (0, 1) (a threshold on the scaled first component), "
                             f"got {foreground}.")
        keep = colours[:, 0] >= foreground
        if not keep.any():
            raise InputError(f"no patch reaches the foreground threshold {foreground}; lower it.")
        colours = torch.zeros_like(colours)
        colours[keep] = _scaled(_components(rows[keep]), quantiles)
    return colours.reshape(h, w, 3).numpy().astype(np.float32)


def _components(rows: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` projections on the first three principal axes, sign-fixed; no-signal ones zero."""
    centred = rows - rows.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    out = torch.zeros(rows.shape[0], 3, dtype=rows.dtype)
    k = min(3, s.numel())
    if k == 0 or s[0] <= 0:
        return out
    proj = u[:, :k] * s[:k]
    signs = torch.sign(proj.gather(0, proj.abs().argmax(dim=0, keepdim=True)))
    proj = proj * torch.where(signs == 0, torch.ones_like(signs), signs)
    proj[:, s[:k] < NEGLIGIBLE * s[0]] = 0
    out[:, :k] = proj
    return out


def _scaled(proj: torch.Tensor, quantiles: tuple[float, float]) -> torch.Tensor:
    """Each column's ``quantiles`` mapped to 0 and 1, clipped; a constant column becomes 0.5."""
    q = torch.tensor(quantiles, dtype=proj.dtype)
    low, high = torch.quantile(proj, q, dim=0)
    spread = high - low
    flat = spread <= 1e-12 * proj.abs().amax(dim=0).clamp_min(1e-300)
    scaled = (proj - low) / torch.where(flat, torch.ones_like(spread), spread)
    scaled[:, flat] = 0.5
    return scaled.clamp_(0, 1)


def feature_pca(model: Any, image: Any, *, layer: int | None = None, short_side: int = DEFAULT_SHORT_SIDE,
                foreground: float | None = None, pretrained: bool = True,
                weights: str | Path | None = None) -> np.ndarray:
    """The PCA picture of ``model``'s patch features on ``image``, as uint8 RGB at the frame's size.

    Args:
        model: a zoo name, a folder written by ``save_pretrained`` or ``surgenet-train``, a task
            model, or a :class:`~surgenet.patch_features.FeatureExtractor` (reused across frames).
        image: a path, a PIL image or a uint8 RGB array (H, W, 3).
        layer: CNNs: stage 0..3 (default 2, stride 16); ViTs: block (default the last).
        short_side: input pixels on the frame's short side (aspect ratio kept).
        foreground: optional threshold (see :func:`pca_rgb`).
        pretrained, weights: with a zoo name, as in :func:`surgenet.load_backbone`.

    Examples:
        >>> from surgenet.visualize import feature_pca
        >>> picture = feature_pca("surgenetxl-caformer", "frame.jpg")   # (H, W, 3) uint8
    """
    from PIL import Image

    frame = as_rgb_array(image)  # a bad image fails here, before any model is loaded
    if isinstance(model, FeatureExtractor):
        if layer is not None or weights is not None:
            raise InputError("a FeatureExtractor has its layer and weights; pass layer= and weights= to "
                             "load_feature_extractor instead.")
        extractor = model
    else:
        extractor = load_feature_extractor(model, layer=layer, pretrained=pretrained, weights=weights)
    colours = pca_rgb(extractor(frame, short_side=short_side), foreground=foreground)
    tiles = Image.fromarray(np.round(colours * 255).astype(np.uint8))
    return np.asarray(tiles.resize((frame.shape[1], frame.shape[0]), Image.Resampling.NEAREST))


def side_by_side(panels: Sequence[tuple[str, Any]], height: int | None = None, gap: int = 6) -> np.ndarray:
    """Pictures in a row, each under its title, as one uint8 RGB array (frame | PCA | ...).

    Args:
        panels: ``(title, image)`` pairs; images are resized to the first one's height.
        height: resize every panel to this height (default: the first panel's own).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not panels:
        raise InputError("side_by_side needs at least one (title, image) panel.")
    images = [Image.fromarray(as_rgb_array(img)) for _, img in panels]
    height = int(height or images[0].height)
    images = [im if im.height == height else im.resize((max(1, round(im.width * height / im.height)), height),
                                                       Image.Resampling.BILINEAR) for im in images]
    font = ImageFont.load_default(size=max(10, height // 24))
    bar = int(font.size * 1.7)
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height + bar), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for (title, _), im in zip(panels, images):
        canvas.paste(im, (x, bar))
        text = _fit(draw, str(title), font, im.width - 8)
        draw.text((x + 4, bar // 2), text, fill="black", font=font, anchor="lm")
        x += im.width + gap
    return np.asarray(canvas)


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def save_png(picture: np.ndarray, path: str | Path, optimize: bool = True) -> Path:
    """Write a uint8 array (RGB, or one channel of labels) as a PNG, atomically (a half-written
    file is never left behind). ``optimize=False`` is for a mask and an overlay per video frame:
    no best-compression search and zlib's fastest level, since the default level 6 made the
    writer the slowest stage of real-time video (an 854x480 overlay: about 105 -> 28 ms, 11 %
    larger; the pixels are the same, PNG is lossless)."""
    from PIL import Image

    path = Path(path)
    options = {"optimize": True} if optimize else {"compress_level": 1}
    with atomic_target(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG", **options)
    return path


__all__ = ["feature_pca", "pca_rgb", "save_png", "side_by_side"]
