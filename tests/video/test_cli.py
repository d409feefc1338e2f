"""``surgenet track`` and ``surgenet predict --keyframe-every``: outputs, names, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
av = pytest.importorskip("av")

from surgenet.cli import main  # noqa: E402


def _texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 3)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX)


def _scene(n: int = 5, h: int = 96, w: int = 128) -> tuple[list[np.ndarray], np.ndarray]:
    """A camera pan over a textured scene (3 px per frame; the content moves left) and the first
    frame's 0/255 mask of a 32-px square of that scene."""
    world = _texture(np.random.default_rng(0), (h, w + 3 * n, 3))
    frames = [np.ascontiguousarray(world[:, 3 * t:3 * t + w]) for t in range(n)]
    mask = np.zeros((h, w), np.uint8)
    mask[32:64, 40:72] = 255
    return frames, mask


@pytest.fixture
def folder(tmp_path) -> tuple[Path, Path]:
    frames, mask = _scene()
    root = tmp_path / "frames"
    root.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(root / f"shot_{t * 5}.png")  # natural order: shot_5 before shot_10
    (root / "shot_7.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return root, tmp_path / "mask.png"


def test_track_a_folder_with_a_binary_mask(folder, tmp_path, capsys):
    root, mask = folder
    out = tmp_path / "out"
    assert main(["track", str(root), "--out", str(out), "--mask", str(mask)]) == 0
    message = capsys.readouterr()
    assert "5 frame(s)" in message.out and "skipped 1 unreadable" in message.out
    assert "shot_7" in message.err
    names = sorted(p.stem for p in (out / "masks").glob("*.png"))
    assert names == sorted(f"shot_{t * 5}" for t in range(5))
    first = np.asarray(Image.open(out / "masks" / "shot_0.png"))
    assert first.shape == (96, 128) and set(np.unique(first)) == {0, 1}  # 0/255 became one object, id 1
    last = np.asarray(Image.open(out / "masks" / "shot_20.png"))
    truth = np.zeros_like(last)
    truth[32:64, 28:60] = 1  # the square moved 12 px left; the unchanged mask would have IoU 20/44
    assert (last & truth).sum() / (last | truth).sum() > 0.9
    assert (out / "overlays" / "shot_20.png").is_file()
    with open(out / "tracks.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == [f"shot_{t * 5}" for t in range(5)]
    assert {r["track_id"] for r in rows} == {"1"}


def test_track_a_video_names_frames_by_index(tmp_path):
    frames, mask = _scene(4)
    video = tmp_path / "clip.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert main(["track", str(video), "--out", str(out), "--mask", str(tmp_path / "mask.png"), "--no-overlay"]) == 0
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == [f"frame_{i:06d}.png" for i in range(4)]
    assert not (out / "overlays").exists()


@pytest.mark.parametrize("case, needle", [
    ("small_mask", "is 10x8 but the frames are 128x96"),
    ("empty_folder", "holds no images"),
    ("no_mode", "give --mask"),
    ("features_without_model", "--method features needs --model"),
    ("rgb_mask", "one-channel PNG"),
    ("keyframes_with_mask", "--keyframe-every is for keyframe mode"),
])
def test_bad_input_is_one_line_and_exit_code_2(folder, tmp_path, capsys, case, needle):
    root, mask = folder
    args = ["track", str(root), "--out", str(tmp_path / "out"), "--mask", str(mask)]
    if case == "small_mask":
        Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "small.png")
        args[-1] = str(tmp_path / "small.png")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args[1] = str(tmp_path / "empty")
    elif case == "no_mode":
        args = args[:4]
    elif case == "features_without_model":
        args += ["--method", "features"]
    elif case == "keyframes_with_mask":
        args += ["--keyframe-every", "5"]
    elif case == "rgb_mask":
        Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(tmp_path / "rgb.png")
        args[-1] = str(tmp_path / "rgb.png")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "out" / "masks").exists()  # refused before any work


@pytest.fixture(scope="module")
def tiny_model():
    import surgenet

    return surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False,
                               input_size=(64, 64))


def test_keyframe_mode_in_predict_and_track_reports_the_model_calls(folder, tmp_path, capsys, tiny_model,
                                                                     monkeypatch):
    import surgenet.models

    monkeypatch.setattr(surgenet.models, "load_model", lambda *args, **kwargs: tiny_model)  # build it once
    root, _ = folder
    zoo = ["--model", "surgenet-caformer", "--num-classes", "3", "--no-pretrained"]
    assert main(["predict", str(root), *zoo, "--task", "segmentation", "--out", str(tmp_path / "p"),
                 "--keyframe-every", "3", "--no-overlay"]) == 0
    out = capsys.readouterr().out
    calls = int(out.split("keyframe mode: segmenter on ")[1].split(" of ")[0])
    assert 2 <= calls <= 5  # the first frame, the 4th, and any confidence drops
    assert "of 5 frame(s)" in out
    assert len(list((tmp_path / "p" / "masks").glob("*.png"))) == 5
    assert main(["track", str(root), *zoo, "--out", str(tmp_path / "t"),
                 "--keyframe-every", "1", "--track-classes", "1", "2"]) == 0
    assert "segmenter on 5 of 5 frame(s)" in capsys.readouterr().out
    assert (tmp_path / "t" / "tracks.csv").is_file()


def test_track_keyframes_run_on_a_registry_backend_and_cuda_ones_refuse_without_a_gpu(folder, tmp_path, capsys,
                                                                                     tiny_model, monkeypatch):
    import surgenet.models
    import torch
    from PIL import Image

    monkeypatch.setattr(surgenet.models, "load_model", lambda *args, **kwargs: tiny_model)
    root, _ = folder
    zoo = ["--model", "surgenet-caformer", "--num-classes", "3", "--no-pretrained", "--keyframe-every", "1"]
    masks = {}
    for backend in ("torch-eager-fp32", "torch-channels-last-fp32"):
        assert main(["track", str(root), *zoo, "--backend", backend, "--device", "cpu",
                     "--out", str(tmp_path / backend)]) == 0
        masks[backend] = [np.asarray(Image.open(p)) for p in sorted((tmp_path / backend / "masks").glob("*.png"))]
    assert len(masks["torch-eager-fp32"]) == 5
    for a, b in zip(*masks.values()):  # the same FP32 network in another memory format
        assert np.mean(a == b) > 0.99
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["track", str(root), *zoo, "--backend", "torch-cuda-graphs-fp16", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs an NVIDIA GPU with CUDA" in err[0]
