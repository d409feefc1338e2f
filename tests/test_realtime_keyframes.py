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


def test_cli_realtime_lookahead_writes_every_mask_and_says_so(seg_model, static_clip, tmp_path, capsys):
    from surgenet.cli import main

    folder = seg_model.save_pretrained(tmp_path / "seg-la")
    out = tmp_path / "out-la"
    assert main(["predict", str(static_clip), "--model", str(folder), "--out", str(out), "--device", "cpu",
                 "--realtime", "--keyframe-interval", "4", "--lookahead", "--no-overlay"]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"frame_{i:06d}.png" for i in range(FRAMES)]
    assert "look-ahead (masks from both keyframes)" in text and "interpolate" in text


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
    (["--keyframe-interval", "3"], "it needs --realtime"),
    (["--realtime", "--drop-stale", "--keyframe-interval-max", "3"], "--drop-stale runs the model on every frame"),
    (["--drop-stale"], "pass --realtime --drop-stale"),
    (["--realtime", "--stride", "2"], "drop --stride"),
    (["--lookahead"], "it needs --realtime"),
    (["--realtime", "--lookahead", "--propagation", "features"], "--propagation features has none: use flow or raft"),
])
def test_bad_interval_options_are_one_line_and_exit_code_2_before_the_model(flags, needle, static_clip, tmp_path,
                                                                           capsys, monkeypatch):
    import surgenet.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("checked only after building the model"))
    code = _exit_code(["predict", str(static_clip), *flags, "--model", "surgenet-caformer", "--task", "segmentation",
                       "--no-pretrained", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------- look-ahead
def test_lookahead_masks_every_frame_once_in_order_and_keyframes_stay_the_model_s(seg_model, moving_clip):
    import surgenet
    from surgenet.realtime_keyframes import run_keyframe_video

    predictor = surgenet.Predictor(seg_model, device="cpu", batch_size=1)
    expected = {r.index: r.class_map for r in predictor.predict_video(moving_clip)}
    order = []
    report = run_keyframe_video(predictor, moving_clip, interval=3, cut_threshold=None, realtime=False,
                                lookahead=True, sink=lambda r: order.append((r.index, r.class_map)))
    assert [i for i, _ in order] == list(range(7)) and report.lookahead
    assert report.keyframe_indices == [0, 3, 6]
    for i, mask in order:
        assert mask.shape == (48, 64)
        if i in report.keyframe_indices:
            assert np.array_equal(mask, expected[i]), i
    # frames 1, 2 and 4, 5 were held and released at keyframes 3 and 6: one interpolation time each
    assert len(report.stages["interpolate"]) == 4 and len(report.stages["propagate"]) == 4
    assert "look-ahead" in __import__("surgenet.realtime_keyframes", fromlist=["x"]).format_keyframe_report(report)


def test_lookahead_releases_the_last_frames_at_the_end_of_the_clip(static_clip):
    import surgenet
    from surgenet.realtime_keyframes import run_keyframe_video

    written = []
    report = run_keyframe_video(surgenet.Predictor(SleepyBackend(0.0)), static_clip, interval=4, realtime=False,
                                warmup=False, lookahead=True, sink=lambda r: written.append(r.index))
    # keyframes 0, 4, 8 of 10 frames: frame 9 has no keyframe after it and is written as carried forward
    assert written == list(range(FRAMES)) and report.keyframe_indices == [0, 4, 8]


def _flow_stream(lookahead):
    from surgenet.realtime_keyframes import KeyframePropagation
    from surgenet.video.methods import create_propagator

    return KeyframePropagation(create_propagator("flow"), work_scale=1.0, lookahead=lookahead)


def _logits(probs):
    """Logits whose softmax is ``probs`` (H, W, C) -> (C, H, W)."""
    import torch

    return torch.from_numpy(np.log(np.clip(probs, 1e-6, 1)).transpose(2, 0, 1).copy())


def test_on_a_still_scene_held_frames_blend_the_two_keyframes_by_nearness():
    """No motion: carried either way the probabilities stay put, so frame j between keyframes a and b
    is (1 - w) p_a + w p_b with w = (j - a) / (b - a), computed here by hand."""
    rng = np.random.default_rng(0)
    image = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::4, ::4], 4, 0), 4, 1))  # texture for the flow
    p_a = np.zeros((40, 56, 3), np.float32)
    p_a[..., 0] = 1
    p_b = np.zeros_like(p_a)
    p_b[..., 2] = 1
    stream = _flow_stream(lookahead=True)
    assert stream.keyframe(image, _logits(p_a)) == []
    assert all(stream.propagate(image) is None for _ in range(3)) and stream.held == 3
    released = stream.keyframe(image, _logits(p_b))
    assert len(released) == 3 and stream.held == 0
    for j, probs in enumerate(released, start=1):
        w = j / 4
        np.testing.assert_allclose(probs[..., 0], 1 - w, atol=2e-3)
        np.testing.assert_allclose(probs[..., 2], w, atol=2e-3)


def test_a_scene_cut_releases_held_frames_as_carried_forward():
    """After a cut the next keyframe is another scene: the held frames get exactly what causal mode
    gives them."""
    rng = np.random.default_rng(1)
    frames = [np.ascontiguousarray(np.roll((rng.random((32, 48, 3)) * 255).astype(np.uint8), 2 * i, axis=1))
              for i in range(4)]
    probs = rng.random((32, 48, 4)).astype(np.float32)
    probs /= probs.sum(-1, keepdims=True)
    causal, ahead = _flow_stream(False), _flow_stream(True)
    causal.keyframe(frames[0], _logits(probs))
    ahead.keyframe(frames[0], _logits(probs))
    forward = [causal.propagate(f) for f in frames[1:3]]
    assert [ahead.propagate(f) for f in frames[1:3]] == [None, None]
    released = ahead.keyframe(frames[3], _logits(probs[::-1].copy()), scene_cut=True)
    assert len(released) == 2
    for got, want in zip(released, forward):
        np.testing.assert_array_equal(got, want)


def test_pull_back_carries_a_later_frame_s_mask_to_where_the_object_was():
    """A square moving right 4 px a frame (a third of its width): a step's pull-back applied to the
    true mask of its frame must give the true mask of the frame before (IoU on the square; leaving
    the mask where it is would score 0.5), and the look-ahead blend between keyframes 0 and 4 must
    track the square at every held frame."""
    from surgenet.video.methods import create_propagator
    from surgenet.video.propagate import labels_of

    h, w, size, speed = 48, 80, 12, 4
    rng = np.random.default_rng(2)
    background = np.repeat(np.repeat((rng.random((h // 4, w // 4)) * 60).astype(np.uint8), 4, 0), 4, 1)

    def frame(i):
        img = np.stack([background] * 3, -1).copy()
        img[18:18 + size, 10 + speed * i:10 + speed * i + size] = 220
        return np.ascontiguousarray(img)

    def truth(i):
        m = np.zeros((h, w), np.uint8)
        m[18:18 + size, 10 + speed * i:10 + speed * i + size] = 1
        return m

    def iou(a, b):
        return np.logical_and(a == 1, b == 1).sum() / np.logical_or(a == 1, b == 1).sum()

    def probs_of(mask):
        return np.eye(2, dtype=np.float32)[mask]

    propagator = create_propagator("flow", scale=1.0)
    propagator.start(frame(0), probs_of(truth(0)))
    for i in range(1, 4):
        step = propagator.step(frame(i))
        assert iou(labels_of(step.pull_back(probs_of(truth(i)))), truth(i - 1)) > 0.85, i

    stream = _flow_stream(lookahead=True)
    stream.keyframe(frame(0), _logits(probs_of(truth(0))))
    for i in range(1, 4):
        stream.propagate(frame(i))
    released = stream.keyframe(frame(4), _logits(probs_of(truth(4))))
    for i, probs in enumerate(released, start=1):
        assert iou(labels_of(probs), truth(i)) > 0.85, i


def test_the_default_work_size_holds_as_many_pixels_as_the_model_sees():
    from surgenet.realtime_keyframes import KeyframePropagation, default_work_scale
    from surgenet.video.methods import create_propagator

    stream = KeyframePropagation(create_propagator("flow"), model_size=(256, 256))
    h, w = stream.work_size(np.zeros((480, 854, 3), np.uint8))
    assert abs(h * w - 256 * 256) / (256 * 256) < 0.01 and abs(w / h - 854 / 480) < 0.01
    assert default_work_scale(200, 200, (256, 256)) == 1.0  # never above full size
    assert default_work_scale(480, 854) == 0.5 and default_work_scale(480, 640) == 1.0  # without the model's size
