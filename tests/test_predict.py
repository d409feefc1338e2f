"""Predictor on images, folders and videos, and the ``surgenet predict`` command."""

from __future__ import annotations

import csv
import logging
import os
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import surgenet
import surgenet.predict as predict_module
from surgenet.cli import main
from surgenet.exceptions import InputError
from surgenet.results import palette

SAMPLE = Path(str(files("surgenet") / "assets" / "sample_frame.png"))
SIZE = (64, 64)  # the models' input size here: small and fast


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def seg_model():
    return surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=4, pretrained=False,
                               input_size=SIZE)


@pytest.fixture(scope="module")
def phase_model():
    return surgenet.load_model("surgenet-caformer", task="phase", num_classes=5, pretrained=False,
                               input_size=SIZE)


@pytest.fixture(scope="module")
def cvs_model():
    return surgenet.load_model("surgenet-caformer", task="cvs", pretrained=False, input_size=SIZE)


def _synthetic_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Colourful moving content: red/green/blue gradients that drift with the frame index."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (xx * 4 + t * 3) % 256
        frames[t, ..., 1] = (yy * 5 + t * 2) % 256
        frames[t, ..., 2] = 255 - (xx + yy) * 2 % 256
    return frames


def _av():
    """PyAV, which only the video tests need: they skip without it, the image and CLI tests run."""
    return pytest.importorskip("av")


def _write_video(path: Path, frames: np.ndarray, fps: int = 30) -> Path:
    av = _av()
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        else:
            stream.bit_rate = 4_000_000
        for arr in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        container.mux(stream.encode())
    return path


def _decode_all(path: Path) -> np.ndarray:
    with _av().open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = _synthetic_frames(90)
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames), frames


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("short") / "short.mp4", _synthetic_frames(10))


@pytest.fixture
def folder_with_a_broken_file(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in zip((10, 2, 1), ((40, 50), (30, 70), (60, 45))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"frame_{i}.png")
    (folder / "frame_5.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (folder / "notes.txt").write_text("not an image either, and not listed")
    return folder


def _pil_resize(planes: np.ndarray, hw) -> np.ndarray:
    """``(C, H, W)`` planes resized to ``hw`` by PIL's bilinear filter in float32 (mode F)."""
    return np.stack([np.asarray(Image.fromarray(p.astype(np.float32), mode="F")
                                .resize((int(hw[1]), int(hw[0])), Image.Resampling.BILINEAR), dtype=np.float64)
                     for p in planes])


def _reference_input(model, image: np.ndarray) -> torch.Tensor:
    """The documented preprocessing, written out with PIL rather than torch: bilinear (antialiased)
    resize of each channel in float (PIL mode F, no rounding) to the input size, then
    (x / 255 - mean) / std with the model's statistics."""
    x = _pil_resize(image.transpose(2, 0, 1), model.config["input_size"][-2:]) / 255.0
    mean = np.asarray(model.config["mean"]).reshape(3, 1, 1)
    std = np.asarray(model.config["std"]).reshape(3, 1, 1)
    return torch.from_numpy((x - mean) / std).float()[None]


def _read_rgb(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# ----------------------------------------------------------------------------- segmentation
def test_single_image_gives_a_class_map_at_the_frames_own_size(seg_model):
    predictor = surgenet.Predictor(seg_model, device="cpu")
    rgb = _read_rgb(SAMPLE)
    assert rgb.shape == (360, 640, 3)
    result = predictor.predict(SAMPLE)
    assert result.class_map.shape == (360, 640) and result.class_map.dtype == np.uint8
    assert result.source == str(SAMPLE)
    # The documented pipeline, computed here: logits at the input size, resized bilinearly to the
    # frame size, argmax. Pixels may only differ where two classes nearly tie.
    with torch.inference_mode():
        logits = seg_model(_reference_input(seg_model, rgb))[0].numpy()
    expected = _pil_resize(logits, (360, 640)).argmax(0)
    assert np.mean(result.class_map == expected) > 0.999
    assert len(np.unique(result.class_map)) > 1  # a random head still separates the frame
    # a path, a PIL image and an array of the same frame give the same map
    assert np.array_equal(predictor.predict(Image.open(SAMPLE)).class_map, result.class_map)
    assert np.array_equal(predictor.predict(rgb).class_map, result.class_map)


def test_overlay_blends_each_class_colour_and_keeps_the_background(seg_model):
    result = surgenet.Predictor(seg_model, device="cpu").predict(SAMPLE)
    rgb = _read_rgb(SAMPLE)
    overlay = result.overlay(alpha=0.4)
    assert overlay.shape == (360, 640, 3) and overlay.dtype == np.uint8
    background = result.class_map == 0
    assert np.array_equal(overlay[background], rgb[background])
    colours = palette(4).astype(np.float64)
    assert len({tuple(c) for c in colours}) == 4
    expected = np.rint(0.6 * rgb + 0.4 * colours[result.class_map])
    assert np.abs(overlay[~background].astype(np.float64) - expected[~background]).max() <= 1
    fractions = result.class_fractions()
    assert fractions["class_0"] == pytest.approx(background.mean())
    assert sum(fractions.values()) == pytest.approx(1.0)


def test_folder_with_a_corrupt_file_reports_it_and_processes_the_others(seg_model, folder_with_a_broken_file,
                                                                        caplog):
    folder = folder_with_a_broken_file
    errors = []
    results = list(surgenet.Predictor(seg_model, device="cpu", batch_size=2).predict_folder(
        folder, on_error=lambda path, exc: errors.append((path, exc))))
    assert [Path(r.source).name for r in results] == ["frame_1.png", "frame_2.png", "frame_10.png"]  # natural order
    assert [r.class_map.shape for r in results] == [(60, 45), (30, 70), (40, 50)]
    assert len(errors) == 1 and errors[0][0] == str(folder / "frame_5.png")
    assert isinstance(errors[0][1], InputError)
    # without a handler the file is logged and skipped
    with caplog.at_level(logging.WARNING, logger="surgenet.predict"):
        assert len(list(surgenet.Predictor(seg_model, device="cpu").predict_folder(folder))) == 3
    assert "frame_5.png" in caplog.text


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_oversized_image_is_skipped_not_fatal(seg_model, folder_with_a_broken_file, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1200)  # frame_1 (60x45) is over twice that: PIL refuses it
    errors = []
    results = list(surgenet.Predictor(seg_model, device="cpu").predict_folder(
        folder_with_a_broken_file, on_error=lambda path, exc: errors.append(Path(path).name)))
    assert errors == ["frame_1.png", "frame_5.png"]
    assert [Path(r.source).name for r in results] == ["frame_2.png", "frame_10.png"]


def test_video_is_streamed_lazily(seg_model, video, monkeypatch):
    path, frames = video
    decoded = []
    real_iter_video = predict_module.iter_video

    def counting(*args, **kwargs):
        for frame in real_iter_video(*args, **kwargs):
            decoded.append(frame.index)
            yield frame

    monkeypatch.setattr(predict_module, "iter_video", counting)
    predictor = surgenet.Predictor(seg_model, device="cpu", batch_size=4)
    results = predictor.predict_video(path)
    assert decoded == []  # nothing is decoded before the first result is asked for
    first = next(results)
    assert first.index == 0 and len(decoded) <= 4  # one batch, not the whole video
    rest = list(results)
    assert len(decoded) == 90
    everything = [first, *rest]
    assert [r.index for r in everything] == list(range(90))
    assert all(r.class_map.shape == (48, 64) for r in everything)
    times = [r.time for r in everything]
    assert times[0] == pytest.approx(0.0, abs=1e-6) and times[-1] == pytest.approx(89 / 30, abs=1e-3)
    # decoded frames are the RGB frames that were encoded (lossy codec: close, channels in order)
    images = np.stack([r.image for r in everything]).astype(np.float64)
    assert np.abs(images - frames).mean() < 8


def test_video_memory_stays_flat(seg_model, video):
    """Traced Python memory after 60 frames is no higher than after 10: nothing accumulates."""
    import tracemalloc

    path, _ = video
    predictor = surgenet.Predictor(seg_model, device="cpu", batch_size=2, keep_images=False)
    tracemalloc.start()
    try:
        marks = {}
        for result in predictor.predict_video(path):
            if result.index in (10, 60):
                marks[result.index] = tracemalloc.get_traced_memory()[0]
            if result.index == 60:
                break
    finally:
        tracemalloc.stop()
    assert marks[60] - marks[10] < 256 * 1024, marks  # one 64x48 frame is 9 KiB; 50 kept would be >450 KiB


def test_video_stride(seg_model, video):
    path, _ = video
    results = list(surgenet.Predictor(seg_model, device="cpu", batch_size=8).predict_video(path, stride=7))
    assert [r.index for r in results] == list(range(0, 90, 7))


# ----------------------------------------------------------------------------- phase and CVS
def test_phase_on_a_video_is_online_and_equals_the_offline_model(phase_model, short_video):
    results = list(surgenet.Predictor(phase_model, device="cpu", batch_size=4).predict_video(short_video))
    assert [r.index for r in results] == list(range(10))
    frames = _decode_all(short_video)
    clip = torch.cat([_reference_input(phase_model, f) for f in frames])  # (T, 3, H, W)
    with torch.inference_mode():
        expected = torch.softmax(phase_model(clip), dim=-1).numpy()
    got = np.stack([r.probabilities for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert [r.phase for r in results] == list(expected.argmax(1))
    assert results[3].name == f"phase_{expected[3].argmax()}"
    row = results[3].row()
    assert row["frame"] == 3 and row["prediction"] == results[3].name
    assert float(row["time_s"]) == pytest.approx(3 / 30, abs=1e-3)


def test_a_stateless_phase_backend_is_refused_with_the_fix():
    # Exported phase runners stream through the Predictor (tests/runtime/test_phase_runner.py); a
    # plain callable has no state to carry from frame to frame.
    def backend(x):
        return np.zeros((len(x), 7), np.float32)

    backend.config = {"task": "phase", "num_classes": 7, "mean": [0.5] * 3, "std": [0.2] * 3,
                      "input_size": [3, 32, 32]}
    with pytest.raises(InputError, match="streaming.*surgenet_export.load_runner"):
        surgenet.Predictor(backend)


def test_cvs_probabilities(cvs_model):
    rgb = _read_rgb(SAMPLE)
    result = surgenet.Predictor(cvs_model, device="cpu", threshold=0.5).predict(rgb)
    assert result.probabilities.shape == (3,)
    assert ((result.probabilities >= 0) & (result.probabilities <= 1)).all()
    with torch.inference_mode():
        expected = torch.sigmoid(cvs_model(_reference_input(cvs_model, rgb)))[0].numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert result.achieved == bool((expected >= 0.5).all())
    row = result.row()
    assert row["cvs_achieved"] == int(result.achieved)
    assert set(row) >= {f"p_{n}" for n in cvs_model.class_names}
    assert surgenet.Predictor(cvs_model, device="cpu", threshold=0.0).predict(rgb).achieved


def test_callers_training_flags_are_restored(cvs_model):
    cvs_model.train()
    cvs_model.backbone.eval()  # a mix of flags, as while fine-tuning with a frozen backbone
    before = {name: m.training for name, m in cvs_model.named_modules()}
    try:
        predictor = surgenet.Predictor(cvs_model, device="cpu")
        rgb = _read_rgb(SAMPLE)
        first, second = predictor.predict(rgb), predictor.predict(rgb)
        after = {name: m.training for name, m in cvs_model.named_modules()}
        assert after == before
        # inference ran in eval mode: dropout (active in the head's train mode) did not fire
        np.testing.assert_array_equal(first.probabilities, second.probabilities)
    finally:
        cvs_model.eval()


def test_bad_arguments_are_refused(seg_model, tmp_path):
    with pytest.raises(InputError, match="batch_size"):
        surgenet.Predictor(seg_model, batch_size=0)
    with pytest.raises(InputError, match="Predictor takes"):
        surgenet.Predictor(object())
    with pytest.raises(InputError, match="does not exist"):
        surgenet.Predictor(seg_model, device="cpu").predict_path(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="stride"):
        list(surgenet.Predictor(seg_model, device="cpu").predict_video(tmp_path / "x.mp4", stride=0))


def test_exported_runner_agrees_with_pytorch(seg_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from surgenet_export import export_onnx, load_runner

    result = export_onnx(seg_model, tmp_path / "seg.onnx", imgsz=SIZE, simplify=False)  # faster
    runner = load_runner(result.path)
    ours = surgenet.Predictor(runner, batch_size=2).predict(SAMPLE)
    theirs = surgenet.Predictor(seg_model, device="cpu").predict(SAMPLE)
    assert ours.class_map.shape == (360, 640)
    assert np.mean(ours.class_map == theirs.class_map) >= 0.99


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def seg_folder(seg_model, tmp_path_factory) -> Path:
    return seg_model.save_pretrained(tmp_path_factory.mktemp("cli") / "seg")


def test_cli_segmentation_on_an_image(seg_folder, seg_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(SAMPLE), "--model", str(seg_folder), "--out", str(out), "--device", "cpu"]) == 0
    mask = np.asarray(Image.open(out / "masks" / "sample_frame.png"))
    overlay = Image.open(out / "overlays" / "sample_frame.png")
    assert mask.shape == (360, 640) and overlay.size == (640, 360) and overlay.mode == "RGB"
    expected = surgenet.Predictor(seg_model, device="cpu").predict(SAMPLE).class_map
    assert np.array_equal(mask, expected)  # pixel value = class index
    assert "1 frame(s)" in capsys.readouterr().out


def test_cli_keeps_both_masks_of_files_that_share_a_stem_and_writes_shareable_files(seg_folder, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (80, 60), (120, 60, 60)).save(folder / "a.jpg")
    Image.new("RGB", (160, 90), (60, 120, 60)).save(folder / "a.png")
    Image.new("RGB", (40, 30), (60, 60, 120)).save(folder / "img.v2.png")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(seg_folder), "--out", str(out), "--device", "cpu",
                 "--no-overlay"]) == 0
    sizes = sorted(Image.open(p).size for p in (out / "masks").iterdir())
    assert sizes == [(40, 30), (80, 60), (160, 90)]
    assert (out / "masks" / "img.v2.png").is_file()
    umask = os.umask(0)
    os.umask(umask)
    for path in (out / "masks").iterdir():  # as open() would create them, not private to the owner
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_cli_warns_that_a_zoo_name_has_untrained_task_layers(tmp_path, capsys):
    image = tmp_path / "f.png"
    Image.new("RGB", (64, 48), (90, 40, 40)).save(image)
    assert main(["predict", str(image), "--model", "surgenet-caformer", "--task", "segmentation",
                 "--num-classes", "3", "--no-pretrained", "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    assert "WARNING: surgenet-caformer is a zoo backbone and the backbone and the task layers are random" in \
        capsys.readouterr().err


def test_cli_writes_no_empty_csv_when_nothing_could_be_read(cvs_model, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"not an image")
    model_dir = cvs_model.save_pretrained(tmp_path / "cvs")
    rc = main(["predict", str(folder), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 1 and not (tmp_path / "o" / "predictions.csv").exists()
    assert "0 frame(s) -> nothing written, skipped 1" in capsys.readouterr().out


def test_predict_points_folders_and_videos_to_predict_path(seg_model, short_video):
    with pytest.raises(InputError, match="predict_path"):
        surgenet.Predictor(seg_model).predict(short_video)
    with pytest.raises(InputError, match="is a folder"):
        surgenet.Predictor(seg_model).predict(short_video.parent)


def test_cli_segmentation_on_a_folder_skips_the_unreadable_file(seg_folder, folder_with_a_broken_file, tmp_path,
                                                               capsys):
    out = tmp_path / "out"
    rc = main(["predict", str(folder_with_a_broken_file), "--model", str(seg_folder), "--out", str(out),
               "--device", "cpu", "--no-overlay"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "frame_5.png" in captured.err and "skipped 1" in captured.out
    sizes = {p.name: Image.open(p).size for p in (out / "masks").iterdir()}
    assert sizes == {"frame_1.png": (45, 60), "frame_2.png": (70, 30), "frame_10.png": (50, 40)}
    assert not (out / "overlays").exists()


def test_cli_segmentation_on_a_video(seg_folder, short_video, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(short_video), "--model", str(seg_folder), "--out", str(out), "--device", "cpu",
                 "--stride", "3"]) == 0
    names = sorted(p.name for p in (out / "masks").iterdir())
    assert names == [f"frame_{i:06d}.png" for i in (0, 3, 6, 9)]
    assert Image.open(out / "masks" / names[-1]).size == (64, 48)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == names


def test_cli_phase_csv_has_one_row_per_frame(phase_model, short_video, tmp_path):
    folder = phase_model.save_pretrained(tmp_path / "phase")
    out = tmp_path / "out"
    assert main(["predict", str(short_video), "--model", str(folder), "--out", str(out), "--device", "cpu",
                 "--batch-size", "3"]) == 0
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == list(range(10))
    probs = np.array([[float(r[f"p_phase_{k}"]) for k in range(5)] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [r["prediction"] for r in rows] == [f"phase_{k}" for k in probs.argmax(1)]


def test_cli_cvs_on_a_folder_from_a_zoo_name(folder_with_a_broken_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", str(folder_with_a_broken_file), "--model", "surgenet-caformer", "--task", "cvs",
               "--no-pretrained", "--out", str(out), "--device", "cpu", "--threshold", "0"])
    assert rc == 0
    assert "frame_5.png" in capsys.readouterr().err
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["source"]).name for r in rows] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert all(r["cvs_achieved"] == "1" for r in rows)  # threshold 0: every criterion met
    assert all(0.0 <= float(r["p_C1 two structures"]) <= 1.0 for r in rows)


def test_cli_unreadable_single_image_is_reported(seg_folder, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    rc = main(["predict", str(broken), "--model", str(seg_folder), "--out", str(tmp_path / "out"),
               "--device", "cpu"])
    assert rc != 0
    assert "broken.png" in capsys.readouterr().err


def test_one_logit_segmentation_is_foreground_where_the_sigmoid_passes_one_half():
    model = surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=1, pretrained=False,
                                class_names=["gallbladder"], input_size=SIZE)
    head = model.decoder.segmentation_head[0]
    frame = np.full((40, 56, 3), 120, np.uint8)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(2.0)  # sigmoid 0.88 everywhere
        result = surgenet.Predictor(model).predict(frame)
        assert result.class_map.shape == (40, 56) and (result.class_map == 1).all()
        assert result.class_names == ["background", "gallbladder"]
        head.bias.fill_(-2.0)  # sigmoid 0.12
        assert (surgenet.Predictor(model).predict(frame).class_map == 0).all()
