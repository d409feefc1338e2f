"""The one frame-sampling rule (surgenet.io.sampling), worked by hand."""

from __future__ import annotations

import pytest

from surgenet.exceptions import InputError
from surgenet.io.sampling import FpsSampler, check_fps, num_samples


def _taken(times, fps):
    sampler = FpsSampler(fps)
    return [(t, list(sampler.take(t))) for t in times]


def test_one_fps_of_a_25_fps_stream_takes_every_25th_frame():
    times = [i / 25 for i in range(76)]
    kept = [i for i, (_, samples) in enumerate(_taken(times, 1.0)) if samples]
    assert kept == [0, 25, 50, 75]


def test_timestamps_rounded_down_by_less_than_a_millisecond_still_take_their_sample():
    taken = _taken([0.0, 0.4, 0.9996, 1.4, 2.0], 1.0)
    assert [s for _, s in taken] == [[0], [], [1], [], [2]]


def test_a_gap_gives_the_frame_after_it_every_sample_it_covers():
    taken = _taken([0.0, 3.2, 3.6, 4.0], 1.0)
    assert [s for _, s in taken] == [[0], [1, 2, 3], [], [4]]


def test_a_stream_whose_first_frame_comes_late_starts_sampling_there():
    # Times from the stream's start: a first frame at 0.5 s serves samples 0 and 1 (due at 0 and 0.5 s).
    assert [s for _, s in _taken([0.5, 1.0, 1.5], 2.0)] == [[0, 1], [2], [3]]


def test_rates_are_checked_and_counted():
    for bad in (0, -1, float("inf"), float("nan"), "x"):
        with pytest.raises(InputError, match="fps must be a positive number"):
            check_fps(bad)
    assert num_samples(32.0, 1.0) == 32 and num_samples(32.0005, 1.0) == 32 and num_samples(32.1, 1.0) == 33
