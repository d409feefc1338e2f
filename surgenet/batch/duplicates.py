"""Near-duplicate frames from an embeddings table: how surgical pretraining sets are thinned.

Frames whose embeddings have a cosine similarity above a threshold are listed as pairs; the
similarity matrix is computed in blocks, so memory grows with the block, not the archive squared.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_write_text

BLOCK = 2048


def near_duplicate_pairs(embeddings: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Index pairs ``(i, j)``, ``i < j``, with cosine similarity ``>= threshold``, most similar first."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(x), BLOCK):
        block = x[start:start + BLOCK] @ x.T  # (b, N)
        rows, cols = np.nonzero(block >= threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if i < c:
                pairs.append((i, int(c), float(block[r, c])))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs


def write_near_duplicates(table_path: str | Path, threshold: float, target: str | Path) -> Path:
    """``near_duplicates.csv`` (video_a, frame_a, video_b, frame_b, similarity) from an embeddings Parquet."""
    import pyarrow.parquet as pq

    table = pq.read_table(table_path, columns=["video", "frame", "embedding"])
    embeddings = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)) if table.num_rows else np.zeros((0, 1))
    videos, frames = table.column("video").to_pylist(), table.column("frame").to_pylist()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["video_a", "frame_a", "video_b", "frame_b", "similarity"])
    for i, j, similarity in near_duplicate_pairs(embeddings, threshold):
        writer.writerow([videos[i], frames[i], videos[j], frames[j], f"{similarity:.6f}"])
    return atomic_write_text(target, buffer.getvalue())
