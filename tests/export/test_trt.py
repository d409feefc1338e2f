"""TensorRT: the optimisation profile (pure Python), and engine build/run on an NVIDIA GPU.

The GPU tests are skipped where CUDA is absent, never faked.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import surgenet
from surgenet.runtime.errors import ExportError
from surgenet_export.trt_build import make_profile

_no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")


def needs_gpu(test):
    """Marked ``cuda`` (what the GPU check runs) and skipped, with the reason, where there is no GPU."""
    return pytest.mark.cuda(_no_gpu(test))


def test_static_profile_is_the_export_shape():
    profile = make_profile({"size_multiple": 32}, batch=2, imgsz=(256, 320), dynamic=False)
    assert profile.shapes == {"input": ((2, 3, 256, 320),) * 3}


def test_dynamic_profile_spans_half_to_twice_the_size():
    profile = make_profile({"size_multiple": 32}, batch=2, imgsz=(256, 320), dynamic=True)
    assert profile.shapes["input"] == ((1, 3, 128, 160), (2, 3, 256, 320), (8, 3, 512, 640))


def test_profile_covers_streaming_states_along_their_batch_axis():
    config = {"size_multiple": 32, "state_names": ["state_0"], "state_shapes": [[1, 4, 16]], "state_batch_axes": [1]}
    profile = make_profile(config, batch=1, imgsz=(64, 64), dynamic=True, max_batch=4)
    assert profile.shapes["state_0"] == ((1, 1, 16), (1, 1, 16), (1, 4, 16))


def test_profile_must_contain_the_export_shape():
    with pytest.raises(ExportError, match="must contain"):
        make_profile({"size_multiple": 32}, batch=2, imgsz=(256, 256), dynamic=True, max_imgsz=(128, 128))


@needs_gpu
@pytest.mark.parametrize("strongly_typed", [False, True])
def test_fp16_engine_matches_pytorch(tmp_path, strongly_typed):
    pytest.importorskip("tensorrt")
    from surgenet_export import export_onnx, load_runner
    from surgenet_export.trt_build import build_engine

    model = surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False)
    result = export_onnx(model, tmp_path / "model.onnx", imgsz=(64, 64), dynamic=True)
    profile = make_profile(result.config, 1, (64, 64), dynamic=True)
    report = build_engine(result.path, tmp_path / "model.engine", profile=profile, fp16=True, spec=result.spec,
                          parity_shapes=[(1, 64, 64), (2, 96, 96)], strongly_typed=strongly_typed)
    assert report["parity"]["passed"]
    sidecar = json.loads((tmp_path / "model.engine.json").read_text())
    assert sidecar["tensorrt"]["precision"].startswith("fp16") and sidecar["tensorrt"]["gpu"]
    assert (tmp_path / "timing.cache").is_file()
    runner = load_runner(tmp_path / "model.engine")
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    out = runner(x)
    assert np.mean(out.argmax(1) == ref.argmax(1)) > 0.98


@needs_gpu
def test_onnxruntime_cuda_runner_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu)")
    from surgenet_export import export_onnx, load_runner

    model = surgenet.load_model("surgenet-caformer", task="cvs", pretrained=False)
    result = export_onnx(model, tmp_path / "model.onnx", imgsz=(64, 64), dynamic=True)
    runner = load_runner(result.path, device="cuda")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner(x), ref, atol=1e-3, rtol=1e-2)


@needs_gpu
def test_phase_engine_has_a_profile_for_its_states_and_streams_like_pytorch(tmp_path):
    pytest.importorskip("tensorrt")
    from surgenet_export import export_onnx, load_runner
    from surgenet_export.trt_build import build_engine

    model = surgenet.load_model("surgenet-caformer", task="phase", num_classes=3, pretrained=False,
                                temporal="lstm", hidden_size=16)
    result = export_onnx(model, tmp_path / "model.onnx", imgsz=(64, 64), dynamic=True)
    # a narrow profile: the dynamic parity shape (batch 2, 3/4 size) must be moved inside it
    profile = make_profile(result.config, 1, (64, 64), dynamic=True, max_batch=1, min_imgsz=(64, 64),
                           max_imgsz=(64, 64))
    report = build_engine(result.path, tmp_path / "model.engine", profile=profile, fp16=False, spec=result.spec,
                          parity_shapes=[(1, 64, 64), (2, 32, 32)])
    assert report["parity"]["passed"] and [c["shape"] for c in report["parity"]["checks"]] == [[1, 3, 64, 64]]
    runner = load_runner(tmp_path)
    assert runner.backend == "tensorrt"
    clip = np.random.default_rng(3).standard_normal((3, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        offline = model(torch.from_numpy(clip)).numpy()
    online = np.concatenate([runner(clip[t:t + 1]) for t in range(3)])
    np.testing.assert_allclose(online, offline, atol=1e-2, rtol=1e-2)
