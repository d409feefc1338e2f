"""Weighted mixtures of frame sources, ordered deterministically per seed and epoch.

An epoch holds ``samples_per_epoch`` slots. Source ``k`` fills a share proportional to its
weight; its frames are drawn from reshuffled permutations of the source (every frame once
before any repeats), and the slots are then shuffled together. The order depends only on the
seed and the epoch number, so any step of any epoch can be recomputed after a restart.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from ...exceptions import InputError
from .sources import FrameSource


class Mixture:
    """Sources concatenated into one index space, with weights that set each one's share."""

    def __init__(self, sources: Sequence[FrameSource], weights: Sequence[float] | None = None,
                 samples_per_epoch: int | None = None, seed: int = 0) -> None:
        if not sources:
            raise InputError("no data sources: pass --data PATH (frame folder, frame list or video).")
        weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
        if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InputError(f"mixture weights {weights} must be one non-negative number per source, not all 0.")
        self.sources = list(sources)
        self.sizes = np.array([len(s) for s in sources], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        # Equal weights without an explicit epoch size give a plain epoch over every frame.
        self.samples_per_epoch = int(samples_per_epoch or self.sizes.sum())
        self.weights = np.asarray(weights) / sum(weights)
        self.seed = seed

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def counts(self) -> np.ndarray:
        """Slots per source in one epoch (largest-remainder rounding of the weighted shares)."""
        if len(self.sources) == 1:
            return np.array([self.samples_per_epoch])
        if self.samples_per_epoch == self.sizes.sum() and np.allclose(self.weights, self.weights[0]):
            return self.sizes.copy()
        exact = self.weights * self.samples_per_epoch
        counts = np.floor(exact).astype(np.int64)
        remainder = self.samples_per_epoch - counts.sum()
        counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
        return counts

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Global frame ids of every slot of ``epoch``, in the order they are visited."""
        parts = []
        for k, count in enumerate(self.counts()):
            size = int(self.sizes[k])
            if count == 0 or size == 0:
                continue
            # Continue the source's stream of permutations across epochs: slot j of epoch e is
            # the (e * count + j)-th draw, so a small-weight source still visits all its frames.
            first = epoch * int(count)
            rounds = range(first // size, (first + int(count) - 1) // size + 1)
            stream = np.concatenate([self._permutation(k, r) for r in rounds])
            start = first - rounds[0] * size
            parts.append(self.offsets[k] + stream[start:start + int(count)])
        order = np.concatenate(parts)
        return order[np.random.default_rng([self.seed, epoch, 1 << 20]).permutation(len(order))]

    def _permutation(self, source: int, round_: int) -> np.ndarray:
        return np.random.default_rng([self.seed, source, round_]).permutation(int(self.sizes[source]))

    def locate(self, frame_id: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets, frame_id, side="right") - 1)
        return k, int(frame_id - self.offsets[k])

    def load(self, frame_id: int) -> Image.Image:
        k, i = self.locate(frame_id)
        return self.sources[k].load(i)
