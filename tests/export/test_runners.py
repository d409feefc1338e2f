"""Runners: one interface over PyTorch, ONNX Runtime and OpenVINO; metadata round trip;
``surgenet.Predictor`` on an exported model. GPU runners are tested in test_export_trt.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import surgenet

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from surgenet_export import export_onnx, load_runner, read_onnx_config  # noqa: E402
from surgenet.runtime.torch_runner import TorchRunner  # noqa: E402


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    model = surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=4, pretrained=False,
                                class_names=["bg", "liver", "tool", "gallbladder"])
    out = tmp_path_factory.mktemp("seg")
    result = export_onnx(model, out / "model.onnx", imgsz=(64, 64), dynamic=True)
    return model, result


def test_metadata_round_trip(seg):
    model, result = seg
    proto = onnx.load(str(result.path))
    props = {p.key: p.value for p in proto.metadata_props}
    # Readable keys, checked with the plain onnx API against the model's own config.
    assert props["surgenet.task"] == "segmentation"
    assert props["surgenet.model"] == "surgenet-caformer"
    assert json.loads(props["surgenet.classes"]) == ["bg", "liver", "tool", "gallbladder"]
    assert json.loads(props["surgenet.mean"]) == pytest.approx(list(surgenet.model_info("surgenet-caformer")["mean"]))
    assert json.loads(props["surgenet.input_size"]) == [3, 256, 256]
    assert props["surgenet.version"] == surgenet.__version__
    config = read_onnx_config(result.path)
    for key in ("task", "num_classes", "class_names", "mean", "std", "input_size", "backbone", "head"):
        assert config[key] == model.config[key]
    assert config["export"]["dynamic"] is True and config["export"]["opset"] == 18
    sidecar = json.loads((result.path.parent / "model.onnx.json").read_text())
    assert sidecar["config"] == config


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runners_match_pytorch_through_one_interface(seg, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    model, result = seg
    runner = load_runner(result.path, backend=backend)
    assert runner.config["task"] == "segmentation" and runner.config["num_classes"] == 4
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner(x), expected, atol=1e-4, rtol=1e-3)


def test_load_runner_on_the_export_folder_picks_onnx_without_a_gpu(seg):
    _, result = seg
    if torch.cuda.is_available():
        pytest.skip("with CUDA the folder's engine would be preferred; this checks the CPU choice")
    runner = load_runner(result.path.parent)
    assert runner.backend == "onnxruntime-cpu"


def test_torch_runner_leaves_the_callers_model_alone(seg):
    model, _ = seg
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner = TorchRunner(model, device="cpu", channels_last=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner(x), expected, atol=1e-4, rtol=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).is_contiguous()


def test_predictor_runs_an_exported_model_like_the_pytorch_one(seg):
    model, result = seg
    frame = (np.random.default_rng(2).random((80, 96, 3)) * 255).astype(np.uint8)
    ours = surgenet.Predictor(load_runner(result.path), batch_size=1).predict(frame)
    theirs = surgenet.Predictor(model, device="cpu", batch_size=1).predict(frame)
    agree = np.mean(ours.class_map == theirs.class_map)
    assert agree > 0.999


def test_streaming_runner_keeps_the_state_between_calls(tmp_path):
    model = surgenet.load_model("surgenet-caformer", task="phase", num_classes=3, pretrained=False,
                                temporal="lstm", hidden_size=16)
    result = export_onnx(model, tmp_path / "phase.onnx", imgsz=(64, 64))
    runner = load_runner(result.path)
    clip = np.random.default_rng(3).standard_normal((3, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        offline = model(torch.from_numpy(clip)).numpy()  # (T, P): frame t sees frames 0..t
    online = np.concatenate([runner(clip[t:t + 1]) for t in range(3)])
    np.testing.assert_allclose(online, offline, atol=1e-4, rtol=1e-3)
    runner.reset()
    np.testing.assert_allclose(runner(clip[:1])[0], offline[0], atol=1e-4, rtol=1e-3)
