"""Learning curves of a fine-tuning run: ``log.jsonl`` drawn as a PNG (matplotlib, Agg backend).

Left: the training loss per epoch. Right: the validation metrics that are single numbers
(``val_score`` and friends), so a reader sees at a glance whether the run learned and when it
stopped improving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..figures import pyplot, save_figure

PLOT_FILE = "curves.png"


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw ``records`` (one dict per epoch with ``epoch``, ``train_loss``, ``val_*``) into ``path``."""
    plt = pyplot()
    epochs = [r["epoch"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    losses = [(r["epoch"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    if losses:
        left.plot(*zip(*losses), marker="o", label="train loss")
    left.set_xlabel("epoch")
    left.set_title("training loss")
    left.grid(alpha=0.3)
    keys = sorted({k for r in records for k, v in r.items()
                   if k.startswith("val_") and isinstance(v, (int, float)) and not isinstance(v, bool)})
    for key in keys:
        points = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        right.plot(*zip(*points), marker="o", label=key[4:], linewidth=2.5 if key == "val_score" else 1.2)
    right.set_xlabel("epoch")
    right.set_title("validation")
    right.grid(alpha=0.3)
    if keys:
        right.legend(fontsize=8)
    for ax in (left, right):
        if epochs:
            ax.set_xticks(sorted(set(epochs)) if len(set(epochs)) <= 20 else ax.get_xticks())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
