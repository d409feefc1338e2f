"""Real surgical frames shipped with the package, for demos, examples and tests.

Three Endoscapes2023 validation frames with their 7-class masks and CVS labels (CC BY-NC-SA 4.0,
CAMMA; see ``surgenet/assets/endoscapes/README.md`` for the attribution), in the layout of an
Endoscapes split folder (``images/``, ``masks/``, ``cvs.csv``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .exceptions import InputError

ENDOSCAPES_DIR = Path(str(files("surgenet") / "assets" / "endoscapes"))
DEMO_FRAME = "142_28750"  # gallbladder, two instruments, cystic artery and duct


def endoscapes_frames() -> list[Path]:
    """The shipped Endoscapes frames (JPEG, 854x480), sorted by name."""
    return sorted((ENDOSCAPES_DIR / "images").glob("*.jpg"))


def endoscapes_frame(stem: str = DEMO_FRAME) -> Path:
    """One shipped frame by its ``<video>_<frame>`` stem (default: the demo's frame)."""
    path = ENDOSCAPES_DIR / "images" / f"{stem}.jpg"
    if not path.is_file():
        names = ", ".join(p.stem for p in endoscapes_frames())
        raise InputError(f"no shipped Endoscapes frame {stem!r}; the package has {names}.")
    return path


def endoscapes_mask(stem: str = DEMO_FRAME) -> Path:
    """The mask PNG of a shipped frame (0 background ... 6 tool, 255 ignore)."""
    endoscapes_frame(stem)
    return ENDOSCAPES_DIR / "masks" / f"{stem}.png"


__all__ = ["DEMO_FRAME", "ENDOSCAPES_DIR", "endoscapes_frame", "endoscapes_frames", "endoscapes_mask"]
