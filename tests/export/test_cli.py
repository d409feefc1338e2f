"""The ``surgenet-export`` command: a save_pretrained folder end to end, FP16 ONNX, --trt without a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import surgenet

pytest.importorskip("onnxruntime")
from surgenet_export.cli import main  # noqa: E402


def test_export_a_saved_folder_with_fp16_onnx(tmp_path, capsys):
    model = surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False)
    model.save_pretrained(tmp_path / "saved")
    out = tmp_path / "export"
    code = main([str(tmp_path / "saved"), "--imgsz", "64", "64", "--fp16", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and "FAIL" not in printed
    for name in ("model.onnx", "model.onnx.json", "model.fp16.onnx", "model.fp16.onnx.json"):
        assert (out / name).is_file(), name
    fp16_report = json.loads((out / "model.fp16.onnx.json").read_text())
    assert fp16_report["parity"]["passed"] and fp16_report["parity"]["tolerance"]["min_argmax_agreement"] == 0.98

    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    fp16 = ort.InferenceSession(str(out / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    out16 = fp16.run(None, {"input": x})[0]
    assert out16.dtype == np.float32  # FP32 at the interface, FP16 inside
    assert np.abs(out16 - ref).max() < 0.05 * np.abs(ref).max()


def test_fp16_graph_keeps_normalisations_in_fp32(tmp_path):
    onnx = pytest.importorskip("onnx")
    from surgenet_export import export_onnx
    from surgenet_export.fp16 import convert_to_fp16

    model = surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False)
    result = export_onnx(model, tmp_path / "m.onnx", imgsz=(64, 64))
    proto = onnx.load(str(convert_to_fp16(result.path)))
    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    types.update({i.name: i.data_type for i in proto.graph.initializer})
    norms = [n for n in proto.graph.node if n.op_type in ("LayerNormalization", "InstanceNormalization")]
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert norms and convs
    assert all(types.get(n.input[0]) == onnx.TensorProto.FLOAT for n in norms)
    assert all(types.get(n.input[1]) == onnx.TensorProto.FLOAT16 for n in convs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no CUDA")
def test_trt_without_cuda_says_it_needs_an_nvidia_gpu(tmp_path, capsys):
    code = main(["surgenet-caformer", "--task", "cvs", "--no-pretrained", "--trt", "--out", str(tmp_path)])
    assert code != 0
    err = capsys.readouterr().err
    assert "TensorRT needs an NVIDIA GPU" in err
    assert not any(tmp_path.iterdir())  # failed before doing any work


def test_user_errors_exit_cleanly(tmp_path, capsys):
    code = main(["surgenet-caformer", "--task", "segmentation", "--no-pretrained", "--out", str(tmp_path)])
    assert code == 2
    assert "with --task segmentation needs --num-classes N" in capsys.readouterr().err


@pytest.mark.parametrize("broken", ["not-an-image.png", "cut.png"])
def test_int8_with_a_broken_calibration_frame_stops_before_the_export(tmp_path, capsys, monkeypatch, broken):
    pytest.importorskip("nncf")
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(frames / f"f{i}.png")
    whole = (frames / "f0.png").read_bytes()
    (frames / broken).write_bytes(b"garbage" if broken.startswith("not") else whole[: len(whole) // 2])
    built = []
    monkeypatch.setattr(surgenet, "load_model", lambda *a, **k: built.append(a))
    code = main(["surgenet-caformer", "--task", "cvs", "--no-pretrained", "--int8", "--calib", str(frames),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and broken in err and len(err.strip().splitlines()) == 1, err
    assert built == [] and not (tmp_path / "out").exists()


def test_missing_onnx_names_the_extra_before_building_a_model(tmp_path, capsys, monkeypatch):
    import sys

    built = []
    monkeypatch.setattr(surgenet, "load_model", lambda *a, **k: built.append(a))
    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` sees when onnx is not installed
    code = main(["surgenet-caformer", "--task", "cvs", "--no-pretrained", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'surgenet[export]'" in err and "onnx" in err
    assert len(err.strip().splitlines()) == 1
    assert built == [] and not (tmp_path / "out").exists()


def test_onnx_only_refuses_trt(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["surgenet-caformer", "--task", "cvs", "--onnx", "--trt", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
