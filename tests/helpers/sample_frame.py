"""Generate surgenet/assets/sample_frame.png: a synthetic 640x360 laparoscopy-like RGB frame.

Procedural and deterministic (fixed seed, no external data): tissue with smooth multi-scale
texture, yellow fat, vessels, specular reflections, a metallic instrument and the dark circular
field of view of a laparoscope. It is no real patient data; it exists so that demos and tests
have a frame of the right size and look without shipping medical images.

    python -m tests.helpers.sample_frame [--out PATH]      # from the repository root
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 640, 360
SEED = 20240517
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "surgenet" / "assets" / "sample_frame.png"


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Value noise: a random grid of ``cells`` columns, bilinearly interpolated to the frame."""
    rows = max(2, round(cells * HEIGHT / WIDTH)) + 1
    grid = rng.random((rows, cells + 1))
    y = np.linspace(0, rows - 1, HEIGHT)[:, None]
    x = np.linspace(0, cells, WIDTH)[None, :]
    y0, x0 = np.floor(y).astype(int).clip(0, rows - 2), np.floor(x).astype(int).clip(0, cells - 1)
    fy, fx = y - y0, x - x0
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no grid creases
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _fractal(rng: np.random.Generator, octaves: tuple[int, ...]) -> np.ndarray:
    total = sum(_smooth_noise(rng, c) / (i + 1) for i, c in enumerate(octaves))
    total -= total.min()
    return total / total.max()


def make_frame(seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)

    texture = _fractal(rng, (4, 9, 20, 45))
    tissue = np.stack([150 + 80 * texture, 45 + 45 * texture, 40 + 35 * texture], axis=-1)

    fat = np.clip((_fractal(rng, (3, 7, 16)) - 0.55) * 6, 0, 1)[..., None]
    tissue = tissue * (1 - fat) + np.array([225.0, 190.0, 105.0]) * fat * (0.8 + 0.2 * texture[..., None])

    for k in range(4):  # vessels: dark red sinuous lines
        phase, amp, y0 = rng.uniform(0, 2 * np.pi), rng.uniform(15, 40), rng.uniform(60, 300)
        centre = y0 + amp * np.sin(xx / rng.uniform(60, 120) + phase) + 0.15 * (xx - 320) * (k - 1.5)
        vessel = np.exp(-((yy - centre) ** 2) / (2 * rng.uniform(1.5, 3.5) ** 2))[..., None]
        tissue = tissue * (1 - 0.7 * vessel) + np.array([110.0, 15.0, 25.0]) * 0.7 * vessel

    # Instrument: a grey shaft from the lower right towards the centre, with jaws at its tip.
    tip, direction = np.array([200.0, 330.0]), np.array([0.62, 0.785])  # (y, x), unit vector to the entry
    rel_y, rel_x = yy - tip[0], xx - tip[1]
    along = rel_y * direction[0] + rel_x * direction[1]
    across = -rel_y * direction[1] + rel_x * direction[0]
    shaft = (along > 0) & (np.abs(across) < 22)
    jaws = (along <= 0) & (along > -38) & (np.abs(across) < 22 + along * 0.45) & (np.abs(np.abs(across) - 7) < 6)
    tool = (shaft | jaws)[..., None]
    metal = 95 + 120 * np.exp(-((across - 8) ** 2) / 60) + 25 * np.cos(across / 22 * np.pi / 2)
    tool_rgb = np.stack([metal, metal * 1.02, metal * 1.08], axis=-1)
    tool_rgb[(np.abs(along - 120) < 4)[..., None].repeat(3, axis=2) & (shaft[..., None].repeat(3, axis=2))] = 40
    image = np.where(tool, tool_rgb, tissue)

    # Specular reflections on wet tissue, where the texture peaks.
    spots = np.zeros((HEIGHT, WIDTH))
    for _ in range(14):
        cy, cx, r = rng.uniform(20, 340), rng.uniform(40, 600), rng.uniform(2.0, 6.0)
        spots += np.exp(-((yy - cy) ** 2 + ((xx - cx) / 1.6) ** 2) / (2 * r * r))
    spots = np.clip(spots, 0, 1)[..., None] * (~tool)
    image = image * (1 - spots) + 255 * spots

    # Light from the scope: bright centre, dark periphery, circular field of view with black corners.
    r = np.hypot((yy - HEIGHT / 2) / (HEIGHT / 2), (xx - WIDTH / 2) / (HEIGHT / 2))
    light = np.clip(1.15 - 0.45 * r ** 2, 0, 1)
    field = np.clip((1.85 - r) / 0.06, 0, 1)
    image = image * (light * field)[..., None]
    image += rng.normal(0, 2.0, image.shape)  # sensor noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_frame()).save(args.out, format="PNG", optimize=False)
    print(f"wrote {args.out} ({WIDTH}x{HEIGHT})")


if __name__ == "__main__":
    main()
