"""The real-time video pipeline (surgenet.realtime) and ``surgenet predict`` on videos with it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import surgenet
from surgenet.cli import main
from surgenet.exceptions import InputError
from surgenet.realtime import run_video, stage_time
from tests.helpers.scripts import load_script
from tests.helpers.realtime import SleepyBackend, write_pattern_clip

av = pytest.importorskip("av")

SIZE = (32, 32)  # the smallest input of a stride-32 backbone: fast
N_FRAMES = 20


def _write_clip(path: Path, n: int = N_FRAMES, fps: int = 25, h: int = 48, w: int = 64) -> Path:
    """Frames whose content moves with the index (so that every frame differs)."""
    return write_pattern_clip(path, n, fps, moving=True, h=h, w=w)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module")
def fast_clip(tmp_path_factory) -> Path:
    """100 fps: the whole clip lasts 0.2 s when played in real time."""
    return _write_clip(tmp_path_factory.mktemp("fast") / "fast.mp4", fps=100)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """7 frames: for the real models (batches of 3 end with a short one)."""
    return _write_clip(tmp_path_factory.mktemp("short") / "short.mp4", n=7)


@pytest.fixture(scope="module")
def seg_model():
    return surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=4, pretrained=False,
                               input_size=SIZE)


# ----------------------------------------------------------------------------- ordering and dropping
def test_realtime_drops_stale_frames_keeps_order_and_the_newest(fast_clip):
    # A 100 ms model on a clip with a frame every 10 ms: at most ~1 frame in 10 can be processed.
    backend = SleepyBackend(0.1)
    report = run_video(surgenet.Predictor(backend), fast_clip, realtime=True, warmup=False)
    processed, dropped = report.processed_indices, report.dropped_indices
    assert report.decoded == N_FRAMES == report.processed + report.dropped
    assert sorted(processed + dropped) == list(range(N_FRAMES))  # each frame either written or dropped, once
    assert all(a < b for a, b in zip(processed, processed[1:]))  # never reordered
    assert processed[0] == 0 and processed[-1] == N_FRAMES - 1  # the first, and the newest at the end
    assert report.dropped >= 10 and backend.calls == report.processed
    assert report.keeps_up is False


def test_throughput_mode_drops_nothing_even_with_a_slow_model(clip):
    report = run_video(surgenet.Predictor(SleepyBackend(0.02), batch_size=3), clip, warmup=False)
    assert report.processed_indices == list(range(N_FRAMES)) and report.dropped == 0
    # every stage timed once per frame; the model's 20 ms sleep per batch of 3 is a floor for its share
    assert {k: len(v) for k, v in report.stages.items()} == {k: N_FRAMES for k in report.stages}
    assert stage_time(report.stages["infer"]).mean_ms >= 20 / 3
    assert report.wall_s >= 7 * 0.02  # 7 batches (3+3+3+3+3+3+2) of at least 20 ms each
    assert report.fps == pytest.approx(N_FRAMES / report.wall_s)


def test_stride_and_max_frames_bound_the_frames_read(clip):
    report = run_video(surgenet.Predictor(SleepyBackend(0.0)), clip, stride=3, max_frames=4, warmup=False)
    assert report.processed_indices == [0, 3, 6, 9] and report.decoded == 4
    assert report.source_fps == pytest.approx(25 / 3)


class ThreadRecordingBackend(SleepyBackend):
    """Records the torch threads of the thread that runs the model."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.threads = torch.get_num_threads()
        return super().__call__(x)


def test_helper_stages_run_torch_on_one_thread_and_the_callers_setting_is_kept(clip):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backend = ThreadRecordingBackend(0.0)
        seen: list[int] = []
        run_video(surgenet.Predictor(backend, batch_size=2), clip, sink=lambda r: seen.append(torch.get_num_threads()))
        assert set(seen) == {1}  # the writer: postprocessing and the sink
        assert backend.threads == 1  # an exported model: torch only stacks frames in the main thread
        assert torch.get_num_threads() == 2  # restored for the caller
    finally:
        torch.set_num_threads(before)


def test_stage_time_is_the_mean_and_the_interpolated_90th_percentile():
    t = stage_time([float(v) for v in range(1, 11)])
    # 90th percentile of 1..10: position 0.9 * (10 - 1) = 8.1 -> 9 + 0.1 * (10 - 9) = 9.1
    assert (t.mean_ms, t.p90_ms, t.count) == (5.5, pytest.approx(9.1), 10)


def test_a_failing_sink_stops_the_run_with_its_error(clip):
    def sink(result):
        if result.index == 5:
            raise OSError("disk full")

    start = time.perf_counter()
    with pytest.raises(OSError, match="disk full"):
        run_video(surgenet.Predictor(SleepyBackend(0.0), batch_size=2), clip, sink=sink, warmup=False)
    assert time.perf_counter() - start < 30  # no thread left waiting on a full queue


def test_argmax_classes_picks_the_first_maximum_like_torch():
    from surgenet.argmax import argmax_classes

    scores = torch.tensor([[[1.0, 5.0], [0.0, -1.0]],
                           [[3.0, 5.0], [0.0, -2.0]],
                           [[2.0, 1.0], [4.0, -1.0]]])
    # per pixel: max 3 at class 1; a 5-5 tie -> class 0; 4 at class 2; a -1/-1 tie -> class 0
    assert argmax_classes(scores).tolist() == [[1, 0], [2, 0]] and argmax_classes(scores).dtype == torch.uint8
    x = torch.randn(13, 17, 19, generator=torch.Generator().manual_seed(1)).round(decimals=1)  # many ties
    assert torch.equal(argmax_classes(x).long(), x.argmax(dim=0))


@pytest.mark.parametrize("alpha", [0.5, 0.25])
def test_overlay_blends_like_the_formula_and_keeps_the_background(alpha):
    from surgenet.results import SegmentationResult, palette

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    class_map = rng.integers(0, 4, (9, 11)).astype(np.uint8)
    result = SegmentationResult(index=0, source="", class_names=["bg", "a", "b", "c"], class_map=class_map,
                                image=image)
    # (1 - alpha) * frame + alpha * colour, rounded half to even: exact in binary for these alphas
    expected = np.rint((1 - alpha) * image.astype(np.float64) + alpha * palette(4)[class_map].astype(np.float64))
    expected[class_map == 0] = image[class_map == 0]
    assert np.array_equal(result.overlay(alpha=alpha), expected.astype(np.uint8))
    assert np.array_equal(result.overlay(alpha=alpha, background=None)[class_map == 0],
                          np.rint((1 - alpha) * image[class_map == 0] + alpha * palette(4)[0]).astype(np.uint8))


# ----------------------------------------------------------------------------- same results as the Predictor
def test_pipelined_results_equal_the_plain_predictor_frame_by_frame(seg_model, short_clip):
    predictor = surgenet.Predictor(seg_model, device="cpu", batch_size=3)
    expected = [(r.index, r.class_map) for r in predictor.predict_video(short_clip)]
    got = []
    report = run_video(predictor, short_clip, sink=lambda r: got.append((r.index, r.class_map)))
    assert report.dropped == 0 and [i for i, _ in got] == list(range(7))
    assert len(expected) == len(got)
    for (i, theirs), (j, ours) in zip(expected, got):
        assert i == j and ours.shape == (48, 64) and np.array_equal(ours, theirs)


def test_a_phase_model_keeps_its_temporal_state_through_the_pipeline(short_clip):
    model = surgenet.load_model("surgenet-caformer", task="phase", num_classes=3, pretrained=False, input_size=SIZE)
    predictor = surgenet.Predictor(model, device="cpu", batch_size=2)  # the state crosses batches
    expected = np.stack([r.probabilities for r in predictor.predict_video(short_clip, stride=2)])
    got = []
    run_video(predictor, short_clip, sink=lambda r: got.append(r.probabilities), stride=2)
    assert len(got) == 4
    np.testing.assert_allclose(np.stack(got), expected, rtol=0, atol=1e-6)
    assert not np.allclose(expected[0], expected[-1])  # the state (and the frames) change the output


# ----------------------------------------------------------------------------- exported runners
@pytest.fixture(scope="module")
def export_folder(seg_model, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    from surgenet_export import export_onnx

    folder = tmp_path_factory.mktemp("export")
    export_onnx(seg_model, folder / "model.onnx", imgsz=SIZE, simplify=False)
    return folder


def test_split_batches_runs_pieces_of_the_fixed_size_and_cuts_the_padding():
    from surgenet.backends import split_batches

    shapes = []

    def run(piece):
        shapes.append(piece.shape[0])
        return piece.reshape(len(piece), -1).sum(1)

    x = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    out = split_batches(run, x, 2)
    assert shapes == [2, 2, 2]  # 2 + 2 + (1 + 1 zero frame)
    np.testing.assert_array_equal(out, [x[i].sum() for i in range(5)])


def test_runners_of_a_batch_one_export_take_any_batch(export_folder):
    from surgenet.backends import FixedBatch, load_runner_for
    from surgenet_export import load_runner

    x = torch.randn(3, 3, *SIZE, generator=torch.Generator().manual_seed(0)).numpy()
    plain = load_runner(export_folder / "model.onnx", backend="onnxruntime")
    reference = np.concatenate([plain(x[i:i + 1]) for i in range(3)])  # the graph takes one frame at a time
    ort = load_runner_for(export_folder, "onnxruntime")
    assert isinstance(ort, FixedBatch) and ort.batch == 1
    np.testing.assert_allclose(ort(x), reference, rtol=0, atol=1e-5)
    pytest.importorskip("openvino")
    vino = load_runner_for(export_folder, "openvino")
    np.testing.assert_allclose(vino(x), reference, atol=1e-3)
    assert vino.fixed_batch == 1 and list(vino._compiled) == [SIZE]  # compiled once, for (1, 32, 32)


# ----------------------------------------------------------------------------- CLI
def test_cli_video_prints_the_fps_and_the_stage_times(seg_model, clip, tmp_path, capsys):
    folder = seg_model.save_pretrained(tmp_path / "seg")
    out = tmp_path / "out"
    assert main(["predict", str(clip), "--model", str(folder), "--out", str(out), "--device", "cpu",
                 "--overlay-video", "--batch-size", "4"]) == 0
    text = capsys.readouterr().out
    assert f"{N_FRAMES} frame(s)" in text and "0 dropped" in text and "fps sustained (clip 25.00 fps" in text
    for stage in ("decode", "preprocess", "infer", "postprocess", "write", "latency"):
        assert any(line.split()[:1] == [stage] and len(line.split()) == 3 for line in text.splitlines()), stage
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"frame_{i:06d}.png" for i in range(N_FRAMES)]
    assert not (out / "overlays").exists()
    with av.open(str(out / "overlay.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == N_FRAMES and frames[0].shape == (48, 64, 3)


def test_cli_realtime_with_an_exported_folder_drops_and_says_so(export_folder, fast_clip, tmp_path, capsys,
                                                                monkeypatch):
    import surgenet.backends as backends

    real = backends.load_runner_for

    def slow_runner(*args, **kwargs):  # the exported model, made slower than the 100 fps clip
        runner = real(*args, **kwargs)

        class Slow:
            config = runner.config

            def __call__(self, x):
                time.sleep(0.05)
                return runner(x)
        return Slow()

    monkeypatch.setattr(backends, "load_runner_for", slow_runner)
    out = tmp_path / "out"
    assert main(["predict", str(fast_clip), "--model", str(export_folder), "--backend", "onnxruntime",
                 "--realtime", "--drop-stale", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    written = sorted(int(p.stem.split("_")[1]) for p in (out / "masks").iterdir())
    dropped = int(text.split(" dropped")[0].split()[-1])
    assert dropped > 0 and len(written) + dropped == N_FRAMES and written[-1] == N_FRAMES - 1
    assert f"real time: {len(written)} frame(s) written, {dropped} dropped" in text


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse checks (a missing input) exit from the parser
        return int(exc.code)


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("undecodable", "cannot open video"),
    ("realtime-image", "--realtime and --overlay-video are for videos"),
    ("backend-needs-export", "export it first"),
])
def test_bad_input_is_one_line_and_exit_code_2(case, needle, tmp_path, capsys, monkeypatch):
    import surgenet.models as models
    from PIL import Image

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("checked only after building the model"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    image = tmp_path / "frame.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    good = _write_clip(tmp_path / "good.mp4", n=2)
    argv = {"missing": [str(tmp_path / "nope.mp4")], "undecodable": [str(broken)],
            "realtime-image": [str(image), "--realtime"],
            "backend-needs-export": [str(good), "--backend", "openvino-int8"]}[case]
    code = _exit_code(["predict", *argv, "--model", "surgenet-caformer", "--task", "segmentation",
                       "--no-pretrained", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err


def test_run_video_checks_the_file_before_starting(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_video(surgenet.Predictor(SleepyBackend(0.0)), tmp_path / "missing.mp4")


# ----------------------------------------------------------------------------- benchmark
def test_realtime_benchmark_writes_the_overlay_video_and_a_json_row(seg_model, clip, tmp_path, capsys):
    import json

    realtime_video = load_script("benchmarks/realtime_video.py")

    folder = seg_model.save_pretrained(tmp_path / "seg")
    argv = ["--clip", str(clip), "--model", str(folder), "--frames", "6", "--out", str(tmp_path / "out"),
            "--json", str(tmp_path / "rt.json"), "--cpu-profile"]
    assert realtime_video.main(argv) == 0
    report = json.loads((tmp_path / "rt.json").read_text())
    row = report["results"][0]
    assert (row["backend"], row["processed"], row["dropped"], row["input_size"]) == ("torch-eager-fp32", 6, 0, "32x32")
    assert row["fps"] > 0 and report["machine"]["load_average"] is not None
    assert set(report["cpu_profile"][0]["cpu_ms_per_frame"]) == {"decode", "preprocess", "infer", "postprocess",
                                                                  "write"}
    with av.open(str(tmp_path / "out" / "torch-eager-fp32" / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    assert "| torch-eager-fp32" in capsys.readouterr().out
    assert realtime_video.main([*argv[:4], "--imgsz", "64"]) == 2  # a saved model keeps its size
    assert "--imgsz is for zoo names" in capsys.readouterr().err


def test_live_source_pacer_delivers_frames_at_their_timestamps():
    import time as _time

    from surgenet.realtime import LiveSourcePacer

    pacer = LiveSourcePacer(fps=20.0)
    t0 = _time.perf_counter()
    due = [pacer.wait(t, i) for i, t in enumerate((1.00, 1.03, 1.06))] + [pacer.wait(None, 4)]
    # Offsets from the first frame: its timestamps (0, 30, 60 ms), then count / fps (4 / 20 s).
    offsets = [d - due[0] for d in due]
    assert offsets == pytest.approx([0.0, 0.03, 0.06, 0.2], abs=1e-9)
    assert _time.perf_counter() - t0 >= 0.2 - 1e-3  # it slept until the last frame was due
