"""Percentiles of the latency report and the keyframe interval rule of real-time keyframe mode."""

from __future__ import annotations

import numpy as np
import pytest

from surgenet.realtime import latency_summary, percentile


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_percentile_matches_numpy(n):
    values = np.random.default_rng(n).exponential(30.0, n)
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-12)
    summary = latency_summary(values)
    assert summary["max"] == values.max() and summary["mean"] == pytest.approx(values.mean())


def test_interval_grows_with_the_model_time_and_stays_bounded():
    from surgenet.video.realtime_keyframes import next_interval

    # 40 ms period, 85 % usable = 34 ms; propagation 10 ms: N >= (m - 10) / 24
    assert next_interval(20, 10, 40, 8) == 1
    assert next_interval(100, 10, 40, 8) == 4  # (100 - 10) / 24 = 3.75
    assert next_interval(10_000, 10, 40, 8) == 8  # bounded
    assert next_interval(100, 40, 40, 6) == 6  # propagation alone does not fit: the largest
    assert next_interval(20, 10, 40, 8, backlog=5, current=2) == 3  # frames waiting: one more
