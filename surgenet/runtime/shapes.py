"""Graphs of a fixed batch size on any batch: split into pieces of that size, the last one padded."""

from __future__ import annotations

from typing import Any

import numpy as np


def split_batches(run: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """``run`` on pieces of exactly ``batch`` frames (the last one padded with zeros), outputs joined
    and cut back to ``len(x)``: a graph of a fixed batch size on any batch, without recompiling."""
    outputs = []
    for start in range(0, x.shape[0], batch):
        piece = x[start:start + batch]
        n = piece.shape[0]
        if n < batch:
            piece = np.concatenate([piece, np.zeros((batch - n, *piece.shape[1:]), dtype=piece.dtype)])
        outputs.append(np.asarray(run(piece))[:n])
    return np.concatenate(outputs)


class FixedBatch:
    """A runner whose graph takes exactly ``batch`` frames, made to take any number."""

    def __init__(self, runner: Any, batch: int) -> None:
        self.runner, self.batch, self.config = runner, int(batch), runner.config

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return split_batches(self.runner, x, self.batch)


def with_fixed_batch(runner: Any) -> Any:
    """An ONNX Runtime runner, wrapped in :class:`FixedBatch` when its graph's batch is a fixed
    number (a streaming graph is left as it is: its state belongs to one batch of streams)."""
    session = getattr(runner, "session", None)
    batch = session.get_inputs()[0].shape[0] if session is not None else None
    if isinstance(batch, int) and not runner.config.get("streaming"):
        return FixedBatch(runner, batch)
    return runner
