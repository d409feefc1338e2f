"""Each propagation method carries a mask through a known motion of a real frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from surgenet.exceptions import InputError  # noqa: E402
from surgenet.evaluation.metrics import davis_j  # noqa: E402
from surgenet.video.flow import DISFlowPropagator, FlowPropagator  # noqa: E402
from surgenet.video.methods import create_propagator  # noqa: E402
from surgenet.video.propagate import labels_of, one_hot  # noqa: E402
from tests.helpers.paths import SHARED_DATA

DATA = SHARED_DATA
ENDOSCAPES_FRAME = DATA / "endoscapes" / "val" / "images"


def _real_frame(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A real Endoscapes frame and its tool mask at ``size`` (w, h); without the data a textured frame
    and an off-centre disc (a centred one would not move under a rotation about the centre)."""
    w, h = size
    images = sorted(ENDOSCAPES_FRAME.glob("*.jpg"))
    if images:
        from PIL import Image

        for path in images:
            labels = np.asarray(Image.open(path.parent.parent / "masks" / f"{path.stem}.png"))
            tool = labels == 6
            if 0.04 < tool.mean() < 0.2:
                image = cv2.resize(np.asarray(Image.open(path).convert("RGB")), (w, h), interpolation=cv2.INTER_AREA)
                return image, cv2.resize(tool.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    yy, xx = np.mgrid[:h, :w]
    return image, (((xx - 0.72 * w) ** 2 + (yy - h / 2) ** 2) < (h / 5) ** 2).astype(np.uint8)


def _move(array: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    nearest = array.ndim == 2
    return cv2.warpAffine(array, matrix, (array.shape[1], array.shape[0]),
                          flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.float32([[1, 0, dx], [0, 1, dy]])


def _interior_iou(pred: np.ndarray, truth: np.ndarray, margin: int = 10) -> float:
    """IoU away from the border, where the moved frame shows reflected content nobody can predict."""
    inner = (slice(margin, -margin), slice(margin, -margin))
    return davis_j(pred[inner] == 1, truth[inner] == 1)


def _carry(propagator, image, mask, matrix) -> tuple[np.ndarray, np.ndarray, float]:
    propagator.start(image, one_hot(mask.astype(np.int64), 2))
    step = propagator.step(_move(image, matrix))
    return labels_of(step.probs), _move(mask, matrix), step.score


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_dis_flow_recovers_a_translation(scale):
    image, mask = _real_frame((320, 180))
    matrix = _translation(6, -4)
    pred, truth, score = _carry(DISFlowPropagator(scale=scale), image, mask, matrix)
    baseline = _interior_iou(mask, truth)  # the unchanged mask
    assert _interior_iou(pred, truth) > 0.95 > baseline + 0.05
    assert 0 < score <= 1


def test_dis_flow_recovers_a_rotation():
    image, mask = _real_frame((320, 180))
    matrix = cv2.getRotationMatrix2D((160, 90), 4.0, 1.0).astype(np.float32)  # 4 degrees about the centre
    pred, truth, _ = _carry(DISFlowPropagator(scale=1.0), image, mask, matrix)
    assert _interior_iou(pred, truth) > 0.93 > _interior_iou(mask, truth)


class _KnownFlow(FlowPropagator):
    """A flow method that returns given flows: the consistency check and the warping alone."""

    name = "known"

    def __init__(self, fwd: np.ndarray, bwd: np.ndarray) -> None:
        super().__init__(scale=1.0)
        self.fwd, self.bwd = fwd, bwd

    def _prepare(self, frame):
        return frame

    def _flows(self, prev, cur):
        return self.fwd, self.bwd


def test_pixels_uncovered_behind_a_moving_object_fail_the_consistency_check():
    # A 32x32 square moves 8 px right over a static background. Forward flow: +8 on the square in
    # the first frame; backward flow: -8 on the square in the second. The 8-px strip it uncovers
    # (columns 40..47) pulls from the square (backward flow 0) whose forward flow does not bring it
    # back: occluded. Everything else passes.
    h, w = 96, 128
    fwd, bwd = np.zeros((h, w, 2), np.float32), np.zeros((h, w, 2), np.float32)
    fwd[32:64, 40:72, 0] = 8
    bwd[32:64, 48:80, 0] = -8
    mask = np.zeros((h, w), np.int64)
    mask[32:64, 40:72] = 1
    propagator = _KnownFlow(fwd, bwd)
    propagator.start(np.zeros((h, w, 3), np.uint8), one_hot(mask, 2))
    step = propagator.step(np.zeros((h, w, 3), np.uint8))
    expected = np.ones((h, w), np.float32)
    expected[32:64, 40:48] = 0
    np.testing.assert_array_equal(step.confidence, expected)
    labels = labels_of(step.probs)
    assert (labels[32:64, 48:80] == 1).all()  # the square, moved
    assert (labels[:, :40] == 0).all() and (labels[:, 80:] == 0).all()
    moved = np.zeros((h, w), np.int64)
    moved[32:64, 48:80] = 7
    np.testing.assert_array_equal(step.warp_labels(np.where(mask == 1, 7, 0))[:, 48:], moved[:, 48:])


def test_frames_of_another_size_are_refused():
    propagator = DISFlowPropagator()
    propagator.start(np.zeros((40, 60, 3), np.uint8), one_hot(np.zeros((40, 60), np.int64), 2))
    with pytest.raises(InputError, match="every frame needs one size"):
        propagator.step(np.zeros((40, 62, 3), np.uint8))
    with pytest.raises(InputError, match="unknown propagation method"):
        create_propagator("magic")
    with pytest.raises(InputError, match="needs a model"):
        create_propagator("features")


# ----------------------------------------------------------------------------- RAFT
REAL_RAFT = None
try:
    from surgenet.video.raft import raft_weights_path

    REAL_RAFT = raft_weights_path("raft_small")  # the user's real cache, before a test moves TORCH_HOME
except ImportError:  # pragma: no cover - torchvision missing
    pass


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_raft_without_cached_weights_names_the_file(torch_home):
    from surgenet.video.raft import RAFTPropagator

    expected = torch_home / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    with pytest.raises(InputError) as info:
        RAFTPropagator()
    assert str(expected) in str(info.value) and "weights='DEFAULT'" in str(info.value)


def test_raft_loads_cached_weights_strictly_and_propagates(torch_home):
    from torchvision.models.optical_flow import raft_small

    from surgenet.video.raft import RAFTPropagator, raft_weights_path

    path = raft_weights_path("raft_small")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    net = raft_small()
    torch.save(net.state_dict(), path)
    propagator = RAFTPropagator(num_flow_updates=2, max_side=128, device="cpu")
    for key, value in net.state_dict().items():  # the file's weights, not a fresh random draw
        torch.testing.assert_close(propagator.net.state_dict()[key], value)
    image, mask = _real_frame((96, 64))
    propagator.start(image, one_hot(mask.astype(np.int64), 2))
    step = propagator.step(image)
    assert step.probs.shape == (64, 96, 2)
    np.testing.assert_allclose(step.probs.sum(-1), 1.0, atol=1e-4)
    assert ((step.confidence == 0) | (step.confidence == 1)).all()
    state = net.state_dict()
    state["extra.weight"] = state.pop("feature_encoder.convnormrelu.0.weight")  # a file of another layout
    torch.save(state, path)
    with pytest.raises(InputError, match="do not fit raft_small"):
        RAFTPropagator(device="cpu")


@pytest.mark.skipif(REAL_RAFT is None or not REAL_RAFT.is_file(),
                    reason="torchvision's raft_small weights are not in the local torch hub cache")
def test_raft_recovers_a_translation():  # pragma: no cover - needs the released weights
    from surgenet.video.raft import RAFTPropagator

    image, mask = _real_frame((320, 180))
    pred, truth, _ = _carry(RAFTPropagator(device="cpu"), image, mask, _translation(6, -4))
    assert _interior_iou(pred, truth) > 0.95


# ----------------------------------------------------------------------------- features
def test_feature_propagation_follows_a_shift_of_whole_feature_cells():
    # Convolutional stages are shift-equivariant: a frame moved by 16 px (2 cells at stride 8) has,
    # at each moved cell, exactly the features of the original cell, even with random weights; so
    # the top match of every query is its source and the labels move with the image.
    import surgenet

    from surgenet.video.affinity import FeaturePropagator

    torch.manual_seed(0)
    backbone = surgenet.load_backbone("surgenet-caformer", pretrained=False, out_indices=(0, 1))
    image, mask = _real_frame((128, 96))
    propagator = FeaturePropagator(backbone, stage=1, topk=1, radius=4)
    pred, truth, score = _carry(propagator, image, mask, _translation(16, 8))
    assert _interior_iou(pred, truth, margin=16) > 0.85 > _interior_iou(mask, truth, margin=16)
    assert score > 0.9
