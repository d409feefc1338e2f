"""A video with a known mask on every frame, built from real footage (tests and benchmarks).

Real instrument cut-outs (Endoscapes tool pixels, class 6, with their image content) move along
known smooth paths (translation plus rotation) over consecutive frames of a real clip, which
brings its own camera and tissue motion. Object ``k`` (id ``k + 1``) is pasted after object
``k - 1``, so later objects occlude earlier ones, and the true label map of every frame is the
pasting itself. Everything follows from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exceptions import InputError
from ..io import iter_video, read_image
from ._deps import cv2 as _cv2

TOOL_CLASS = 6  # Endoscapes class id of surgical tools


@dataclass
class SyntheticSequence:
    frames: list[np.ndarray]  # RGB uint8 (H, W, 3)
    masks: list[np.ndarray]  # (H, W) uint8 object ids, 0 background
    paths: list[list[tuple[float, float, float]]] = field(default_factory=list)  # per object: (cx, cy, degrees)
    sources: list[str] = field(default_factory=list)  # the Endoscapes files the cut-outs come from


def _cutouts(endoscapes: Path, count: int, rng: np.random.Generator, min_share: float = 0.03,
             max_share: float = 0.12) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``count`` tool cut-outs (RGB patch, alpha mask, source) of a moderate size, chosen by ``rng``."""
    from PIL import Image

    cv2 = _cv2()
    masks = sorted((endoscapes / "train" / "masks").glob("*.png"))
    if not masks:
        raise InputError(f"no Endoscapes masks under {endoscapes / 'train' / 'masks'}; pass the shared data folder.")
    out = []
    for index in rng.permutation(len(masks)):
        mask_path = masks[int(index)]
        labels = np.asarray(Image.open(mask_path))
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == TOOL_CLASS).astype(np.uint8), connectivity=8)
        if n < 2:
            continue
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        share = stats[best, cv2.CC_STAT_AREA] / labels.size
        if not min_share <= share <= max_share:
            continue
        x, y, w, h = (int(v) for v in stats[best, :4])
        image = read_image(mask_path.parent.parent / "images" / f"{mask_path.stem}.jpg")
        out.append((image[y:y + h, x:x + w].copy(), comp[y:y + h, x:x + w] == best, mask_path.name))
        if len(out) == count:
            return out
    raise InputError(f"found only {len(out)} Endoscapes tool regions of the wanted size; need {count}.")


def build_sequence(data_root: str | Path, num_frames: int = 24, size: tuple[int, int] = (854, 480), seed: int = 0,
                   clip: str = "clip_a.mp4", num_objects: int = 2, speed: float = 5.0) -> SyntheticSequence:
    """Build the sequence. ``size`` is (width, height); ``speed`` the mean motion in pixels per frame
    at 854 pixels wide (scaled with ``size``)."""
    cv2 = _cv2()
    root = Path(data_root)
    clip_path = root / "clips" / clip
    if not clip_path.is_file():
        raise InputError(f"clip {clip_path} not found; pass a data folder that holds clips/{clip}.")
    rng = np.random.default_rng(seed)
    width, height = size
    start = int(rng.integers(0, max(1, 800 - num_frames)))
    background = []
    for vf in iter_video(clip_path):
        if vf.index >= start:
            background.append(cv2.resize(vf.image, (width, height), interpolation=cv2.INTER_AREA))
        if len(background) == num_frames:
            break
    if len(background) < num_frames:
        raise InputError(f"{clip_path} has fewer than {start + num_frames} frames.")
    unit = width / 854.0
    objects = []
    for patch, alpha, source in _cutouts(root / "endoscapes", num_objects, rng):
        f = unit * float(rng.uniform(0.8, 1.0))
        patch = cv2.resize(patch, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha.astype(np.uint8), (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_NEAREST)
        # a smooth path: a straight drift, a slow sway across it, and a slow turn
        c0 = np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height])
        angle = rng.uniform(0, 2 * np.pi)
        drift = speed * unit * rng.uniform(0.7, 1.3) * np.array([np.cos(angle), np.sin(angle)])
        sway = rng.uniform(0.5, 1.5) * speed * unit * 4
        omega, phase = rng.uniform(0.1, 0.25), rng.uniform(0, 2 * np.pi)
        spin = rng.uniform(-1.5, 1.5)  # degrees per frame
        objects.append((patch, alpha, c0, drift, sway, omega, phase, spin, source))
    frames, masks, paths = [], [], [[] for _ in objects]
    for t, bg in enumerate(background):
        frame, mask = bg.copy(), np.zeros((height, width), np.uint8)
        for k, (patch, alpha, c0, drift, sway, omega, phase, spin, _) in enumerate(objects):
            normal = np.array([-drift[1], drift[0]]) / max(np.linalg.norm(drift), 1e-6)
            centre = c0 + drift * (t - num_frames / 2) + normal * sway * np.sin(omega * t + phase)
            degrees = spin * t
            paths[k].append((float(centre[0]), float(centre[1]), float(degrees)))
            ph, pw = alpha.shape
            m = cv2.getRotationMatrix2D((pw / 2, ph / 2), degrees, 1.0)
            m[:, 2] += centre - np.array([pw / 2, ph / 2])
            moved = cv2.warpAffine(patch, m, (width, height), flags=cv2.INTER_LINEAR)
            inside = cv2.warpAffine(alpha, m, (width, height), flags=cv2.INTER_NEAREST) > 0
            frame[inside] = moved[inside]
            mask[inside] = k + 1
        frames.append(frame)
        masks.append(mask)
    return SyntheticSequence(frames, masks, paths, [o[-1] for o in objects])
