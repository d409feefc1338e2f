"""Segmentation models: logits at the input size for every backbone family, and the authors'
segmentation checkpoints (MetaFormerFPN, ConvNextFPN, PVTV2FPN) giving the authors' logits."""

from __future__ import annotations

import pytest
import torch

import surgenet
from surgenet.exceptions import CheckpointError, InputError, KeyMismatchError
from tests.reference import randomize_
from tests.reference.convnextv2_ref import ConvNextFPNRef
from tests.reference.metaformer_ref import SurgeNetMetaFormerFPNRef
from tests.reference.pvtv2_ref import PVTV2FPNRef

# One model per backbone family; ViTs of both patch sizes (16 and 14).
FAMILIES = ["surgenet-caformer", "surgenet-convnextv2", "surgenet-pvtv2", "surgenetxl-dinov1-vits16",
            "surgenetxl-dinov2-vits14"]


@pytest.fixture(scope="module", params=FAMILIES)
def seg_model(request):
    return surgenet.load_model(request.param, task="segmentation", num_classes=3, pretrained=False)


def test_logits_at_the_input_resolution_for_sizes_that_are_not_multiples(seg_model):
    """100x130 is a multiple of neither 32 nor the ViT patch sizes. The logits come at that size,
    and they are the logits of the image padded by replicating its border (the documented
    padding), cropped: a different padding, or padding leaking into kept pixels, would differ."""
    assert not seg_model.training  # load_model returns an eval-mode model
    h, w = 100, 130
    m = seg_model.size_multiple
    assert h % m and w % m
    x = torch.randn(1, 3, h, w)
    ph, pw = -(-h // m) * m, -(-w // m) * m
    padded = torch.nn.functional.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
    with torch.inference_mode():
        logits, big = seg_model(x), seg_model(padded)
    assert tuple(logits.shape) == (1, 3, h, w)
    assert tuple(big.shape) == (1, 3, ph, pw)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, big[..., :h, :w], atol=1e-4, rtol=1e-4)


def test_config_describes_the_model_and_bad_inputs_are_refused(seg_model):
    cfg = seg_model.config
    assert cfg["task"] == "segmentation" and cfg["num_classes"] == 3
    assert cfg["class_names"] == ["class_0", "class_1", "class_2"]
    assert cfg["input_size"] == list(seg_model.entry.input_size)
    assert cfg["mean"] == list(seg_model.entry.mean)
    with pytest.raises(InputError, match="create_transform"):
        seg_model(torch.randn(3, 64, 64))
    with pytest.raises(InputError, match="create_transform"):
        seg_model(torch.randn(1, 1, 64, 64))


def test_load_model_requires_task_and_num_classes():
    with pytest.raises(InputError, match="task="):
        surgenet.load_model("surgenet-caformer")
    with pytest.raises(InputError, match="valid tasks"):
        surgenet.load_model("surgenet-caformer", task="detection")
    with pytest.raises(InputError, match="num_classes"):
        surgenet.load_model("surgenet-caformer", task="segmentation")
    with pytest.raises(InputError, match="class_names"):
        surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3, pretrained=False,
                            class_names=["a", "b"])


# ----------------------------------------------------------------------------- authors' checkpoints
AUTHORS = [
    ("surgenet-caformer", SurgeNetMetaFormerFPNRef),
    ("surgenet-convnextv2", ConvNextFPNRef),
    ("surgenet-pvtv2", PVTV2FPNRef),
]


@pytest.mark.parametrize("name, ref_cls", AUTHORS, ids=[c.__name__ for _, c in AUTHORS])
def test_authors_checkpoint_gives_the_authors_logits(tmp_path, name, ref_cls):
    num_classes = 5
    ref = randomize_(ref_cls(num_classes), seed=7).eval()
    path = tmp_path / "authors_fpn.pth"
    state = ref.state_dict()
    if ref_cls is SurgeNetMetaFormerFPNRef:  # as saved by a DistributedDataParallel training script
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 9}
    torch.save(state, path)
    model = surgenet.load_model(name, task="segmentation", num_classes=num_classes, weights=path)
    assert not model.training
    # Their code normalised with surgical-frame statistics: the model's transform must do the same.
    assert model.config["normalization"] == "surgical"
    x = torch.randn(1, 3, 64, 96)  # multiples of 32: the authors' network runs without padding
    with torch.inference_mode():
        expected, got = ref(x), model(x)
    assert got.shape == expected.shape == (1, num_classes, 64, 96)
    rel = (got - expected).norm() / expected.norm()
    assert rel < 1e-4, f"relative error {rel:.2e}"


def test_star_relu_checkpoint_names_the_activation_keys(tmp_path):
    ref = SurgeNetMetaFormerFPNRef(4, star_relu=True)
    path = tmp_path / "star.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(KeyMismatchError, match="StarReLU") as info:
        surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=4, weights=path)
    expected = {k for k in ref.state_dict() if k.endswith(("act1.scale", "act1.bias", "act.scale", "act.bias"))}
    assert len(expected) > 0 and len(info.value.unexpected) == len(expected)
    assert all(k.rsplit(".", 2)[-2] in ("act1", "act") for k in info.value.unexpected)
    assert not info.value.missing


def test_authors_checkpoint_of_another_family_is_refused(tmp_path):
    path = tmp_path / "metaformer_fpn.pth"
    torch.save(SurgeNetMetaFormerFPNRef(2).state_dict(), path)
    with pytest.raises(CheckpointError, match="MetaFormerFPN"):
        surgenet.load_model("surgenet-convnextv2", task="segmentation", num_classes=2, weights=path)
    with pytest.raises(CheckpointError, match="task='segmentation'"):
        surgenet.load_model("surgenet-caformer", task="cvs", weights=path)
