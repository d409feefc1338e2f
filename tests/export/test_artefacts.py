"""surgenet_export.artefacts: the files a benchmark's backends share, built once, and an export
that failed is not tried again by the next backend."""

from __future__ import annotations

import pytest

from surgenet_export import artefacts, onnx_export


def test_a_failed_export_is_raised_again_without_exporting_again(tmp_path, monkeypatch):
    calls = []

    def failing_export(*args, **kwargs):
        calls.append(kwargs)
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(onnx_export, "export_onnx", failing_export)
    built = artefacts.BackendArtefacts(model=object(), config={}, workdir=tmp_path, batches=[1], sizes=[(64, 96)],
                                       threads=None, dynamic=False)
    for _ in range(2):  # onnxruntime-cpu, then openvino-f32 at the same size
        with pytest.raises(RuntimeError, match="exporter broke"):
            built.artefact("onnx")
    assert len(calls) == 1 and calls[0]["imgsz"] == (64, 96) and calls[0]["dynamic"] is False


def test_int8_without_calibration_frames_is_unavailable_with_the_hint(tmp_path):
    from surgenet.runtime.measure import CALIB_HINT, Unavailable

    built = artefacts.BackendArtefacts(model=object(), config={}, workdir=tmp_path, batches=[1], sizes=[(64, 64)],
                                       threads=None)
    with pytest.raises(Unavailable, match="needs --calib FRAMES_DIR") as exc:
        built.artefact("openvino-ir")
    assert str(exc.value) == CALIB_HINT
