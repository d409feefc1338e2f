"""Percentiles of the latency report and the keyframe interval rule of real-time keyframe mode."""

from __future__ import annotations

import numpy as np
import pytest

from surgenet.realtime import latency_summary, percentile
from tests.helpers.realtime import SleepyBackend, write_pattern_clip


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_percentile_matches_numpy(n):
    values = np.random.default_rng(n).exponential(30.0, n)
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-12)
    summary = latency_summary(values)
    assert summary["max"] == values.max() and summary["mean"] == pytest.approx(values.mean())


def test_interval_grows_with_the_model_time_and_stays_bounded():
    from surgenet.realtime_keyframes import next_interval

    # 40 ms period, 85 % usable = 34 ms; propagation 10 ms: N >= (m - 10) / 24
    assert next_interval(20, 10, 40, 8) == 1
    assert next_interval(100, 10, 40, 8) == 4  # (100 - 10) / 24 = 3.75
    assert next_interval(10_000, 10, 40, 8) == 8  # bounded
    assert next_interval(100, 40, 40, 6) == 6  # propagation alone does not fit: the largest
    assert next_interval(20, 10, 40, 8, backlog=5, current=2) == 3  # frames waiting: one more


# ----------------------------------------------------------------------------- runs on generated clips
av = pytest.importorskip("av")

SIZE = (32, 32)  # the smallest input of a stride-32 backbone: fast
FRAMES = 10


def _write_clip(path, n: int = FRAMES, fps: int = 25, moving: bool = False, h: int = 48, w: int = 64):
    """A smooth pattern; ``moving``: shifted with the index, else the same frame throughout (no scene cut)."""
    return write_pattern_clip(path, n, fps, moving=moving, h=h, w=w)


@pytest.fixture(scope="module")
def static_clip(tmp_path_factory):
    return _write_clip(tmp_path_factory.mktemp("static") / "static.mp4")


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    return _write_clip(tmp_path_factory.mktemp("moving") / "moving.mp4", n=7, moving=True)


@pytest.fixture(scope="module")
def seg_model():
    import surgenet

    return surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=4, pretrained=False,
                               input_size=SIZE)


@pytest.mark.parametrize("interval", [1, 3, 4])
def test_a_fixed_interval_masks_every_frame_and_runs_the_model_every_nth(static_clip, interval):
    import surgenet
    from surgenet.realtime_keyframes import run_keyframe_video

    backend = SleepyBackend(0.0)
    shapes = []
    report = run_keyframe_video(surgenet.Predictor(backend), static_clip, interval=interval, realtime=False,
                                warmup=False, sink=lambda r: shapes.append(r.class_map.shape))
    assert report.processed_indices == list(range(FRAMES)) and shapes == [(48, 64)] * FRAMES
    assert report.keyframes == -(-FRAMES // interval) == backend.calls  # ceil(frames / N), no cut in a static clip
    assert report.keyframe_indices == list(range(0, FRAMES, interval)) and report.scene_cuts == 0
    assert report.propagated == FRAMES - report.keyframes and set(report.intervals) == {interval}


@pytest.mark.parametrize("bound", [2, 5])
def test_a_slow_model_makes_the_interval_grow_up_to_the_bound(static_clip, bound):
    import surgenet
    from surgenet.realtime_keyframes import run_keyframe_video

    # 250 ms a keyframe against a 40 ms frame period (34 ms usable): an interval of at least 250 / 34 > 7 is
    # needed, more than either bound allows; the run starts from an interval of 1
    report = run_keyframe_video(surgenet.Predictor(SleepyBackend(0.25)), static_clip, max_interval=bound,
                                warmup=False)
    assert report.processed_indices == list(range(FRAMES))
    assert report.intervals and all(1 < n <= bound for n in report.intervals) and report.intervals[-1] == bound
    gaps = np.diff(report.keyframe_indices + [FRAMES])
    assert all(g <= bound for g in gaps) and report.keyframes < FRAMES
    assert report.fixed_interval is None and report.max_interval == bound


def test_a_keyframes_mask_is_the_per_frame_prediction(seg_model, moving_clip):
    import surgenet
    from surgenet.realtime_keyframes import run_keyframe_video

    predictor = surgenet.Predictor(seg_model, device="cpu", batch_size=1)
    expected = {r.index: r.class_map for r in predictor.predict_video(moving_clip)}
    got = {}
    report = run_keyframe_video(predictor, moving_clip, interval=3, cut_threshold=None, realtime=False,
                                sink=lambda r: got.__setitem__(r.index, r.class_map))
    assert report.keyframe_indices == [0, 3, 6] and sorted(got) == sorted(expected) == list(range(7))
    for i in report.keyframe_indices:
        assert np.array_equal(got[i], expected[i]), i
    assert all(got[i].shape == (48, 64) for i in got)


# ----------------------------------------------------------------------------- surgenet predict --realtime
def test_cli_realtime_writes_a_mask_for_every_frame_and_reports_the_keyframes(seg_model, static_clip, tmp_path,
                                                                              capsys):
    from surgenet.cli import main

    folder = seg_model.save_pretrained(tmp_path / "seg")
    out = tmp_path / "out"
    assert main(["predict", str(static_clip), "--model", str(folder), "--out", str(out), "--device", "cpu",
                 "--realtime", "--keyframe-interval", "3", "--no-overlay"]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"frame_{i:06d}.png" for i in range(FRAMES)]
    assert f"{FRAMES} frame(s) written, 4 keyframe(s) (model), 6 propagated, fixed interval 3" in text
    assert "fps sustained (clip 25.00 fps: " in text and "p99 " in text
    assert "held back by " in text or "busiest thread: " in text


def _exit_code(argv):
    from surgenet.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own checks exit from the parser
        return int(exc.code)


@pytest.mark.parametrize("flags, needle", [
    (["--realtime", "--keyframe-interval", "0"], "must be >= 1"),
    (["--realtime", "--keyframe-interval-max", "0"], "must be >= 1"),
    (["--realtime", "--keyframe-interval", "9"], "--keyframe-interval 9 is above --keyframe-interval-max 8"),
    (["--realtime", "--keyframe-interval", "5", "--keyframe-interval-max", "4"], "is above --keyframe-interval-max 4"),
    (["--keyframe-interval", "3"], "they need --realtime"),
    (["--realtime", "--drop-stale", "--keyframe-interval-max", "3"], "--drop-stale runs the model on every frame"),
    (["--drop-stale"], "pass --realtime --drop-stale"),
    (["--realtime", "--stride", "2"], "drop --stride"),
])
def test_bad_interval_options_are_one_line_and_exit_code_2_before_the_model(flags, needle, static_clip, tmp_path,
                                                                           capsys, monkeypatch):
    import surgenet.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("checked only after building the model"))
    code = _exit_code(["predict", str(static_clip), *flags, "--model", "surgenet-caformer", "--task", "segmentation",
                       "--no-pretrained", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
