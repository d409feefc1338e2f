"""Every zoo entry builds with random weights and gives the documented feature maps."""

from __future__ import annotations

import math

import pytest
import torch

import surgenet
from surgenet.registry import REGISTRY

EXPECTED_CHANNELS = {
    "caformer": [64, 128, 320, 512],
    "convnextv2": [96, 192, 384, 768],
    "pvtv2": [64, 128, 320, 512],
}
VIT_DIM = {"vits": 384, "vitb": 768, "vitl": 1024}


@pytest.mark.parametrize("name", surgenet.list_models())
def test_feature_maps_have_the_documented_shapes(name):
    entry = REGISTRY[name]
    bb = surgenet.load_backbone(name, pretrained=False).eval()
    h, w = 64, 96
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, h, w))
    assert len(feats) == len(bb.feature_info.channels()) == 4
    if entry.family == "vit":
        dim = VIT_DIM[name.rsplit("-", 1)[1][:4]]
        patch = int(name[-2:])
        assert bb.feature_info.channels() == [dim] * 4
        assert bb.feature_info.reduction() == [patch] * 4
        for f in feats:  # patch-14 models pad the input up to a multiple of 14
            assert f.shape == (1, dim, math.ceil(h / patch), math.ceil(w / patch))
    else:
        assert bb.feature_info.channels() == EXPECTED_CHANNELS[entry.family]
        assert bb.feature_info.reduction() == [4, 8, 16, 32]
        for f, c, r in zip(feats, EXPECTED_CHANNELS[entry.family], (4, 8, 16, 32)):
            assert f.shape == (1, c, h // r, w // r)


def test_vit_pyramid_gives_strides_4_to_32():
    bb = surgenet.load_backbone("surgenetxl-dinov2-vits14", pretrained=False, vit_pyramid=True).eval()
    with torch.no_grad():
        feats = bb(torch.randn(2, 3, 128, 160))
    assert bb.feature_info.reduction() == [4, 8, 16, 32]
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 40), (16, 20), (8, 10), (4, 5)]


def test_out_indices_select_stages_and_are_validated():
    bb = surgenet.load_backbone("surgenet-convnextv2", pretrained=False, out_indices=(1, 3))
    assert bb.feature_info.channels() == [192, 768]
    assert [f.shape[1] for f in bb(torch.randn(1, 3, 64, 64))] == [192, 768]
    with pytest.raises(ValueError, match="out of range"):
        surgenet.load_backbone("surgenet-convnextv2", pretrained=False, out_indices=(4,))


def test_wrong_input_is_a_clear_error():
    bb = surgenet.load_backbone("surgenet-pvtv2", pretrained=False)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        bb(torch.randn(3, 64, 64))
