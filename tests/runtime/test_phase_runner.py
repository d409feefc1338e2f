"""``Predictor(load_runner(...))`` on an exported phase model: the runner's online step, streamed
frame by frame with the state kept by the Predictor, gives the PyTorch model's per-frame phases.

The reference is the model's offline forward over the whole clip (frame t sees frames 0..t), a
different code path from both the online step and the Predictor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import surgenet

SIZE = 64


@pytest.fixture(scope="module")
def phase_model():
    torch.manual_seed(0)
    model = surgenet.load_model("surgenet-caformer", task="phase", num_classes=4, pretrained=False,
                                input_size=[3, SIZE, SIZE])
    # sharper logits than the random init, so that each frame's phase is decided by a clear margin
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.mul_(4)
    return model.eval()


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [(rng.random((48, 56, 3)) * 255).astype(np.uint8) for _ in range(5)]


def _offline_probabilities(model, frames) -> np.ndarray:
    """Softmax of the offline forward over the clip, preprocessed like the Predictor does."""
    transform = surgenet.create_transform(model)
    clip = torch.stack([transform(f) for f in frames])
    with torch.inference_mode():
        return torch.softmax(model(clip), dim=-1).numpy()


def _check_same_phases(results, expected: np.ndarray) -> None:
    got = np.stack([r.probabilities for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3  # argmax only compared where it is decided
    assert clear.sum() >= 3
    assert [r.phase for r, c in zip(results, clear) if c] == list(expected.argmax(1)[clear])
    assert [r.index for r in results] == list(range(len(expected)))


def test_onnx_phase_runner_streams_through_the_predictor(phase_model, frames, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from surgenet_export import export_onnx, load_runner

    result = export_onnx(phase_model, tmp_path / "model.onnx", imgsz=(SIZE, SIZE), simplify=False)
    runner = load_runner(result.path)
    assert runner.config["task"] == "phase" and runner.streaming
    expected = _offline_probabilities(phase_model, frames)
    # the state matters: each frame alone (a fresh state) gives other probabilities
    alone = np.stack([_offline_probabilities(phase_model, [f])[0] for f in frames])
    assert np.abs(alone[1:] - expected[1:]).max() > 1e-2

    predictor = surgenet.Predictor(runner, batch_size=2)
    _check_same_phases(list(predictor.predict_images(frames)), expected)
    # a second video starts from a fresh state, whatever the runner kept from the first
    _check_same_phases(list(predictor.predict_images(frames)), expected)


def test_torch_phase_runner_streams_through_the_predictor(phase_model, frames):
    pytest.importorskip("onnx")  # surgenet_export's package imports
    from surgenet.runtime.torch_runner import TorchRunner

    runner = TorchRunner(phase_model, device="cpu")
    results = list(surgenet.Predictor(runner, batch_size=3).predict_images(frames))
    _check_same_phases(results, _offline_probabilities(phase_model, frames))

