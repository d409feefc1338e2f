"""Tool presence as an inference task: the Predictor, ``surgenet predict``, ONNX export (ONNX Runtime
and OpenVINO runners) and ``surgenet batch``, each checked against the PyTorch model run here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import surgenet
from surgenet.results import MULTI_LABEL_RESULTS, ToolsResult
from surgenet.tasks import MULTI_LABEL_TASKS
from tests.helpers.cli import exit_code
from tests.test_predict import SAMPLE, SIZE, _read_rgb, _reference_input

TOOLS = ["grasper", "hook", "clipper", "suction"]
# Added to the last layer's bias: the random part of a logit stays well under 3, so these decide
# which tools are present whatever the weights drew.
OFFSETS = torch.tensor([3.0, -3.0, 3.0, -3.0])
EXPECTED_PRESENT = ["grasper", "clipper"]


@pytest.fixture(scope="module")
def tools_model():
    torch.manual_seed(0)
    model = surgenet.load_model("surgenet-caformer", task="tools", num_classes=len(TOOLS), pretrained=False,
                                input_size=SIZE, class_names=TOOLS)
    with torch.no_grad():
        model.head[-1].bias += OFFSETS
    return model.eval()


@pytest.fixture(scope="module")
def tools_folder(tools_model, tmp_path_factory) -> Path:
    return tools_model.save_pretrained(tmp_path_factory.mktemp("tools") / "tools")


def _expected(model, image: np.ndarray) -> np.ndarray:
    """sigmoid(model(x)) with x preprocessed by the PIL reference, not the Predictor's transform."""
    with torch.inference_mode():
        return torch.sigmoid(model(_reference_input(model, image)))[0].numpy()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_multi_label_task_has_its_result_type():
    assert set(MULTI_LABEL_RESULTS) == set(MULTI_LABEL_TASKS) and "tools" in MULTI_LABEL_TASKS


def test_predictor_gives_each_tools_sigmoid_and_its_decision(tools_model):
    rgb = _read_rgb(SAMPLE)
    expected = _expected(tools_model, rgb)
    result = surgenet.Predictor(tools_model, device="cpu").predict(rgb)
    assert isinstance(result, ToolsResult) and result.class_names == TOOLS
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert result.present == EXPECTED_PRESENT == [n for n, p in zip(TOOLS, expected) if p >= 0.5]
    assert result.presence == {"grasper": True, "hook": False, "clipper": True, "suction": False}
    row = result.row()
    assert row["prediction"] == "grasper|clipper" and "cvs_achieved" not in row
    np.testing.assert_allclose([float(row[f"p_{n}"]) for n in TOOLS], expected, atol=1e-5)
    # The threshold is the Predictor's: at 0 every tool counts as present, at 1 none (sigmoid < 1 here).
    assert surgenet.Predictor(tools_model, device="cpu", threshold=0.0).predict(rgb).present == TOOLS
    assert surgenet.Predictor(tools_model, device="cpu", threshold=1.0).predict(rgb).present == []


def test_cli_predict_on_a_saved_tools_model_writes_the_tool_names(tools_model, tools_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert exit_code(["predict", str(SAMPLE), "--model", str(tools_folder), "--out", str(out), "--device", "cpu"]) == 0
    assert "1 frame(s) ->" in capsys.readouterr().out
    (row,) = _csv_rows(out / "predictions.csv")
    assert row["prediction"] == "grasper|clipper"
    expected = _expected(tools_model, _read_rgb(SAMPLE))
    np.testing.assert_allclose([float(row[f"p_{n}"]) for n in TOOLS], expected, atol=1e-5)


def test_export_matches_pytorch_and_its_runners_predict_the_same_tools(tools_model, tools_folder, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    from surgenet_export.cli import main as export_main

    export = tmp_path / "export"
    # One save_pretrained folder through surgenet-export, whose own parity check must pass.
    assert export_main([str(tools_folder), "--batch", "2", "--no-simplify", "--out", str(export)]) == 0
    assert "PASS" in capsys.readouterr().out
    sidecar = json.loads((export / "model.onnx.json").read_text())
    assert sidecar["config"]["task"] == "tools" and sidecar["config"]["class_names"] == TOOLS
    assert sidecar["parity"]["passed"] and all(c["argmax_agreement"] == 1.0 for c in sidecar["parity"]["checks"])
    # Independently: a plain ONNX Runtime session against the PyTorch model on inputs drawn here.
    x = np.random.default_rng(3).standard_normal((2, 3, *SIZE), dtype=np.float32)
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x})[0]
    with torch.inference_mode():
        ref = tools_model(torch.from_numpy(x)).numpy()
    assert out.shape == (2, len(TOOLS))
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)
    # The runners behind the Predictor: `surgenet predict` on the export folder, per backend.
    expected = _expected(tools_model, _read_rgb(SAMPLE))
    backends = ["onnxruntime"]
    try:
        import openvino  # noqa: F401
        backends.append("openvino")
    except ImportError:
        pass
    for backend in backends:
        target = tmp_path / backend
        assert exit_code(["predict", str(SAMPLE), "--model", str(export), "--backend", backend,
                          "--out", str(target)]) == 0, backend
        (row,) = _csv_rows(target / "predictions.csv")
        assert row["prediction"] == "grasper|clipper", backend
        np.testing.assert_allclose([float(row[f"p_{n}"]) for n in TOOLS], expected, atol=1e-4, err_msg=backend)


def test_batch_writes_the_tools_probabilities_to_parquet(tools_model, tools_folder, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    frames = tmp_path / "archive" / "case"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(frames / f"{i:06d}.png")
    out = tmp_path / "out"
    # No --task: the saved folder's config says tools.
    assert exit_code(["batch", str(tmp_path / "archive"), "--model", str(tools_folder), "--out", str(out),
                      "--batch-size", "2"]) == 0
    table = pq.read_table(out / "predictions.parquet")
    meta = json.loads(table.schema.metadata[b"surgenet"])
    assert meta["task"] == "tools" and meta["class_names"] == TOOLS
    assert table.column("frame").to_pylist() == [0, 1, 2]
    probabilities = np.asarray(table.column("probabilities").to_pylist(), dtype=np.float32)
    expected = np.stack([_expected(tools_model, image) for image in images])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert table.column("prediction").to_pylist() == ["grasper|clipper"] * 3
    rows = _csv_rows(out / "case" / "predictions.csv")
    np.testing.assert_allclose([[float(r[f"p_{n}"]) for n in TOOLS] for r in rows], expected, atol=1e-5)
