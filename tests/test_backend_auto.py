"""--backend auto: the fastest candidate whose decisions agree with FP32 wins, and the choice is cached."""

from __future__ import annotations

import numpy as np
import pytest

from surgenet.runtime import auto

REF = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
FRAMES = [np.zeros((1, 3, 8, 8), np.float32)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _runner(clock: Clock, ms: float, logits: np.ndarray):
    def run(x):
        clock.now += ms / 1000.0
        return logits
    return lambda: run


def test_fastest_passing_candidate_wins_and_a_failing_one_is_not_timed():
    clock = Clock()
    flipped = REF.copy()
    flipped[0, :, :2] = -flipped[0, :, :2]  # a quarter of the pixels change their argmax
    openers = {"ref": _runner(clock, 10, REF), "a": _runner(clock, 5, REF), "bad": _runner(clock, 1, flipped)}
    best, results = auto.choose(openers, "ref", FRAMES, "segmentation", clock=clock, warmup=1, runs=3)
    by = {m.backend: m for m in results}
    assert best == "a" and by["a"].median_ms == pytest.approx(5.0) and by["ref"].median_ms == pytest.approx(10.0)
    assert not by["bad"].passed and by["bad"].median_ms is None and "agreement" in by["bad"].note


def test_the_cache_key_changes_with_the_model_file(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"one")
    first = auto.cache_key(auto.files_hash([model]), (8, 8), 2, "frames")
    model.write_bytes(b"two")
    assert auto.cache_key(auto.files_hash([model]), (8, 8), 2, "frames") != first
