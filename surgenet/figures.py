"""Matplotlib without a screen, and figures written atomically: the one place plots are set up.

Every figure surgenet draws (training curves, evaluation figures, the web demo's timelines, the
benchmarks' bars) is made off-screen on servers and CI machines, so pyplot is always taken with
the Agg backend; a saved figure never exists half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io.atomic import atomic_target


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: matplotlib is an extra)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG without one) atomically, then close it."""
    path = Path(path)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    pyplot().close(fig)
    return path
