"""The figures of ``surgenet evaluate`` beside its tables (matplotlib, Agg backend).

* cvs / tools: ``pr_curves.png``, each label's precision-recall curve (the points its AP sums),
  its AP and prevalence (a classifier without skill), and the operating point at the threshold;
* phase: ``phase_timeline.png``, per video the ground truth and the prediction as coloured bands
  over the frames, the figure of the surgical phase literature;
* segmentation: ``confusion.png``, the pixel confusion matrix normalised per true class (each row:
  where that class's pixels went), which shows what the thin structures are mistaken for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import metrics
from ..figures import pyplot, save_figure

PR_FILE, TIMELINE_FILE, CONFUSION_FILE = "pr_curves.png", "phase_timeline.png", "confusion.png"
FIGURE_OF_TASK = {"segmentation": CONFUSION_FILE, "cvs": PR_FILE, "tools": PR_FILE, "phase": TIMELINE_FILE}


def pr_curves(probabilities: np.ndarray, targets: np.ndarray, names: Sequence[str], path: str | Path,
              threshold: float = 0.5, title: str = "") -> Path:
    """One precision-recall curve per label of ``probabilities`` ``(N, L)`` against boolean ``targets``."""
    plt = pyplot()
    probabilities, targets = np.asarray(probabilities, dtype=np.float64), np.asarray(targets, dtype=bool)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    colours = plt.get_cmap("tab10")
    ap = metrics.average_precision(probabilities, targets)
    for k, name in enumerate(names):
        colour = colours(k % 10)
        curve = metrics.precision_recall_curve(probabilities[:, k], targets[:, k])
        if curve is None:
            ax.plot([], [], color=colour, label=f"{name}: no positives")
            continue
        recall, precision = curve
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color=colour,
                label=f"{name}: AP {ap[k]:.3f}")
        ax.axhline(targets[:, k].mean(), color=colour, ls=":", lw=1)
        predicted = probabilities[:, k] >= threshold
        if predicted.any():  # the operating point at the threshold
            hits = (predicted & targets[:, k]).sum()
            ax.plot(hits / targets[:, k].sum(), hits / predicted.sum(), "o", color=colour, ms=6)
    ax.plot([], [], color="grey", ls=":", lw=1, label="prevalence (no skill)")
    ax.plot([], [], "o", color="grey", ms=6, label=f"decisions at {threshold:g}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.05))
    ax.set_title(title or "precision-recall per label", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


def phase_timeline(videos: Mapping[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str],
                   path: str | Path, title: str = "") -> Path:
    """Per video (name -> (prediction, ground truth), one phase id per frame): two colour bands."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap([plt.get_cmap("tab10")(k % 10) for k in range(len(names))])
    columns = min(len(names), 4)
    legend_inches = 0.25 * -(-len(names) // columns) + 0.45  # the legend's rows and the x label
    height = 0.5 + 1.1 * len(videos) + legend_inches
    fig, axes = plt.subplots(len(videos), 1, figsize=(10, height), squeeze=False)
    for ax, (video, (pred, truth)) in zip(axes[:, 0], videos.items()):
        bands = np.stack([np.asarray(truth), np.asarray(pred)])
        ax.imshow(bands, aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
        ax.set_yticks([0, 1], ["truth", "predicted"])
        accuracy = float(np.mean(bands[0] == bands[1])) if bands.shape[1] else float("nan")
        ax.set_title(f"{video}: {bands.shape[1]} frames, accuracy {accuracy:.3f}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("frame")
    fig.legend(handles=[Patch(color=cmap(k), label=n) for k, n in enumerate(names)], loc="lower center",
               ncol=columns, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, (legend_inches - 0.2) / height, 1, 1))
    return save_figure(fig, path)


def confusion_figure(confusion: np.ndarray, names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The pixel confusion matrix (rows: true class, columns: predicted), each row divided by its total."""
    plt = pyplot()
    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = 1.2 + 0.7 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if totals[i, 0] > 0:
                ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title or "pixels of each true class, by predicted class", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
