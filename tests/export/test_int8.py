"""Int8 export calibrated on frames (NNCF, OpenVINO) and the mIoU-based fidelity of backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")

from surgenet_export import export_onnx, load_runner  # noqa: E402
from surgenet_export.cli import main  # noqa: E402
from surgenet_export.fidelity import miou_against_masks, to_mask_size  # noqa: E402
from surgenet_export.int8 import quantize_int8  # noqa: E402


class TinySegmenter(nn.Module):
    """A few convolutions with a surgenet config: enough layers for int8 to have something to do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                 nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 1))
        self.config = {"task": "segmentation", "num_classes": 3, "mean": [0.5] * 3, "std": [0.25] * 3,
                       "input_size": [3, 32, 32]}

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    frames = root / "frames"
    (frames / "images").mkdir(parents=True)
    (frames / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        image = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(frames / "images" / f"frame{i}.png")
        Image.fromarray((image[..., 0] // 86).astype(np.uint8)).save(frames / "masks" / f"frame{i}.png")
    torch.manual_seed(0)
    model = TinySegmenter().eval()
    result = export_onnx(model, root / "model.onnx", imgsz=(32, 32))
    report = quantize_int8(result.path, frames, calib_size=5)
    return model, root, frames, report


def test_int8_ir_is_quantised_and_its_sidecar_records_the_calibration(int8_export):
    model, root, frames, report = int8_export
    xml = root / "model.int8.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    ops = [op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()]
    assert ops.count("FakeQuantize") >= 3  # activations of each convolution are quantised
    sidecar = json.loads((root / "model.int8.xml.json").read_text())
    assert sidecar == json.loads(json.dumps(report))
    calib = sidecar["int8"]["calibration"]
    all_frames = {f"frame{i}.png" for i in range(8)}
    assert calib["size"] == 5 and len(calib["files"]) == 5 and set(calib["files"]) <= all_frames
    assert calib["available"] == 8 and calib["folder"] == str(frames.resolve())
    check = sidecar["int8"]["accuracy_vs_fp32"]
    assert check["frames"] == 3 and check["frames_source"] == "held out from calibration"
    assert 0.9 < check["argmax_agreement"] <= 1.0 and 0 < check["mean_abs_err"] < 0.1
    assert check["miou_drop"] == pytest.approx(100 * (check["miou_fp32"] - check["miou_int8"]))
    assert sidecar["config"]["task"] == "segmentation"


def test_int8_runner_follows_the_fp32_model(int8_export):
    model, root, _, _ = int8_export
    runner = load_runner(root / "model.int8.xml")
    assert runner.backend == "openvino-int8" and runner.config["num_classes"] == 3
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 4 - 2
    with torch.inference_mode():
        ref = model(x).numpy()
    out = runner(x.numpy())
    assert out.shape == ref.shape
    # the same function up to int8 rounding (this random net's logits spread little, so compare shapes)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.95
    assert np.mean(out.argmax(1) == ref.argmax(1)) > 0.9


@pytest.mark.parametrize("argv, message", [
    (["--int8"], "--int8 and --calib FRAMES_DIR go together"),
    (["--int8", "--calib", "no/such/frames"], "there is no folder no/such/frames"),
    (["--out-is-a-file"], "is an existing file; pass a folder"),
])
def test_int8_mistakes_are_one_line_before_any_model_is_built(argv, message, tmp_path, capsys, monkeypatch):
    import surgenet

    monkeypatch.setattr(surgenet, "load_model", lambda *a, **k: pytest.fail("a model was built"))
    out = tmp_path / "o"
    if argv == ["--out-is-a-file"]:
        out.write_text("not a folder")
        argv = []
    try:
        code = main(["surgenet-caformer", "--task", "cvs", "--no-pretrained", "--out", str(out), *argv])
    except SystemExit as exit_info:  # refused while parsing (the --out check), before run() starts
        code = exit_info.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_miou_counts_one_confusion_matrix_over_all_frames():
    # Worked by hand. Frame 1: a 2x2 prediction scored against a 4x4 mask (each predicted pixel
    # covers 2x2); 255 and the undocumented 7 are ignored. Frame 2: same size, two mistakes.
    pred1 = np.array([[0, 1], [1, 2]])
    mask1 = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 255],
                      [1, 1, 2, 2],
                      [1, 7, 2, 2]], np.uint8)
    pred2 = np.array([[2, 2], [0, 0]])
    mask2 = np.array([[2, 1], [0, 0]], np.uint8)
    # class 0: 6 hits, 6 predicted, 6 true -> 1; class 1: 6 hits, 6 predicted (two on ignored
    # pixels do not count), 7 true -> 6/7; class 2: 5 hits, 6 predicted, 5 true -> 5/6; class 3
    # occurs nowhere -> None and out of the mean.
    scores = miou_against_masks([pred1, pred2], [mask1, mask2], num_classes=4)
    assert scores["per_class_iou"][:3] == pytest.approx([1.0, 6 / 7, 5 / 6])
    assert scores["per_class_iou"][3] is None
    assert scores["miou"] == pytest.approx((1 + 6 / 7 + 5 / 6) / 3)  # not the mean of per-frame mIoUs (0.875)


def test_predictions_reach_the_mask_size_like_pil_nearest():
    pred = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for shape in [(4, 6), (5, 7), (480, 854)]:
        expected = np.asarray(Image.fromarray(pred).resize((shape[1], shape[0]), Image.NEAREST))
        np.testing.assert_array_equal(to_mask_size(pred, shape), expected)


def test_accuracy_control_keeps_int8_within_the_miou_limit(int8_export, tmp_path):
    _, root, frames, plain = int8_export
    report = quantize_int8(root / "model.onnx", frames, calib_size=5, out_path=tmp_path / "ac.int8.xml",
                           max_miou_drop=0.0)
    facts = report["int8"]
    assert facts["mode"].startswith("accuracy control: mIoU drop at most 0 points on 3 held-out frames")
    # measured on those same held-out frames: no worse than FP32, and never more quantisers than plain PTQ
    assert facts["accuracy_vs_fp32"]["miou_drop"] <= 1e-9
    assert facts["fake_quantize_ops"] <= plain["int8"]["fake_quantize_ops"]
