"""ONNX export: parity with PyTorch per backbone family and task, dynamic shapes, failure modes.

Expectations are computed here, independently of surgenet_export's own validation: the test
runs the PyTorch model and a plain ONNX Runtime session on its own inputs and compares.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import surgenet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from surgenet_export import ExportError, ParityError, export_onnx  # noqa: E402


def _ort(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch(model, x):
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", ["surgenet-caformer", "surgenet-convnextv2", "surgenet-pvtv2"])
def test_segmentation_export_matches_pytorch_at_two_batches_and_sizes(tmp_path, name):
    model = surgenet.load_model(name, task="segmentation", num_classes=5, pretrained=False)
    result = export_onnx(model, tmp_path / "m.onnx", imgsz=(64, 64), dynamic=True)
    session = _ort(result.path)
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 64)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        out = session.run(None, {"input": x})[0]
        ref = _torch(model, x)
        assert out.shape == (shape[0], 5, shape[2], shape[3])
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["parity"]["passed"] is True
    assert [c["shape"][0] for c in sidecar["parity"]["checks"]] == [1, 2]  # two batch sizes
    assert len({tuple(c["shape"][2:]) for c in sidecar["parity"]["checks"]}) == 2  # two spatial sizes
    assert sidecar["export"]["exporter"] == "torchscript"
    proto = onnx.load(str(result.path))
    assert {o.domain: o.version for o in proto.opset_import}.get("", 0) == 18
    assert "GroupNormalization" not in {n.op_type for n in proto.graph.node}  # TensorRT 10 cannot parse -21
    assert all(i.data_location == onnx.TensorProto.DEFAULT for i in proto.graph.initializer)  # self-contained


def test_vit_export_uses_dynamo_and_matches_pytorch(tmp_path):
    # ViTs resample position embeddings with antialiased bicubic interpolation, which only the
    # dynamo exporter translates; it is chosen automatically for them.
    model = surgenet.load_model("surgenetxl-dinov1-vits16", task="segmentation", num_classes=3, pretrained=False)
    result = export_onnx(model, tmp_path / "vit.onnx", imgsz=(64, 64), dynamic=True)
    assert result.config["export"]["exporter"] == "dynamo"
    session = _ort(result.path)
    x = np.random.default_rng(2).standard_normal((2, 3, 96, 96), dtype=np.float32)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], _torch(model, x), atol=1e-4, rtol=1e-3)


def test_cvs_export_matches_pytorch(tmp_path):
    model = surgenet.load_model("surgenet-caformer", task="cvs", pretrained=False)
    result = export_onnx(model, tmp_path / "cvs.onnx", imgsz=(64, 64), batch=2)
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64), dtype=np.float32)
    out = _ort(result.path).run(None, {"input": x})[0]
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out, _torch(model, x), atol=1e-4, rtol=1e-3)


def test_phase_export_runs_the_online_step_like_the_offline_model(tmp_path):
    model = surgenet.load_model("surgenet-caformer", task="phase", num_classes=4, pretrained=False,
                                num_layers=3, channels=16)
    result = export_onnx(model, tmp_path / "phase.onnx", imgsz=(64, 64), dynamic=True)
    session = _ort(result.path)
    names = [i.name for i in session.get_inputs()]
    assert names[0] == "input" and len(names) == 1 + len(result.config["state_names"])
    clip = np.random.default_rng(4).standard_normal((4, 3, 64, 64), dtype=np.float32)
    # The offline forward over the clip is the independent expectation for the online steps.
    with torch.inference_mode():
        offline = model(torch.from_numpy(clip)).numpy()
    state = [np.zeros([1 if a == i else d for i, d in enumerate(s)], np.float32)
             for s, a in zip(result.config["state_shapes"], result.config["state_batch_axes"])]
    for t in range(clip.shape[0]):
        outs = session.run(None, {"input": clip[t:t + 1], **dict(zip(names[1:], state))})
        np.testing.assert_allclose(outs[0][0], offline[t], atol=1e-4, rtol=1e-3)
        state = outs[1:]


def test_baked_preprocessing_takes_rgb_in_0_1(tmp_path):
    model = surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False)
    result = export_onnx(model, tmp_path / "baked.onnx", imgsz=(64, 64), bake_preprocess=True)
    rgb = np.random.default_rng(5).random((1, 3, 64, 64), dtype=np.float32)
    mean = np.asarray(model.config["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(model.config["std"], np.float32).reshape(1, 3, 1, 1)
    expected = _torch(model, (rgb - mean) / std)
    np.testing.assert_allclose(_ort(result.path).run(None, {"input": rgb})[0], expected, atol=1e-4, rtol=1e-3)
    # A caller that follows the config normalises with mean 0 / std 1, i.e. feeds 0..1 RGB.
    assert result.config["mean"] == [0.0, 0.0, 0.0] and result.config["std"] == [1.0, 1.0, 1.0]
    assert result.config["baked_mean"] == model.config["mean"]


@pytest.mark.parametrize("opset", [16, 21])
def test_unsupported_opsets_are_refused(tmp_path, opset):
    model = surgenet.load_model("surgenet-caformer", task="cvs", pretrained=False)
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", imgsz=(64, 64), opset=opset)


class _FrozenSize(nn.Module):
    """Multiplies by the input width as a Python int: tracing freezes it to the export width."""

    config = {"task": "cvs", "num_classes": 3, "mean": [0.0] * 3, "std": [1.0] * 3, "input_size": [3, 64, 64]}

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)

    def forward(self, x):
        return self.proj(x.mean((2, 3))) * int(x.shape[-1])


def test_a_graph_wrong_at_other_sizes_fails_loudly_and_keeps_its_report(tmp_path):
    with pytest.raises(ParityError, match="does not match PyTorch"):
        export_onnx(_FrozenSize(), tmp_path / "bad.onnx", imgsz=(64, 64), dynamic=True)
    report = json.loads((tmp_path / "bad.onnx.json").read_text())
    assert report["parity"]["passed"] is False
    assert report["parity"]["checks"][0]["passed"] is True  # right at the export size
    assert report["parity"]["checks"][1]["passed"] is False  # wrong elsewhere


def test_a_model_without_config_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ExportError, match="config"):
        export_onnx(nn.Conv2d(3, 3, 1), tmp_path / "m.onnx", imgsz=(32, 32))
