"""Every zoo entry builds and gives the documented feature maps.

Shapes need no numbers: the networks are built on PyTorch's meta device (no memory allocated, no
initialisation, no arithmetic), so the 300M-parameter ViT-Ls cost as little as the small ones.
The values these networks compute are checked against independent references in test_load_backbone.py.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import surgenet
from surgenet.zoo.registry import REGISTRY

EXPECTED_CHANNELS = {
    "caformer": [64, 128, 320, 512],
    "convnextv2": [96, 192, 384, 768],
    "pvtv2": [64, 128, 320, 512],
}
VIT_DIM = {"small": 384, "base": 768, "large": 1024}  # timm's ViT sizes


def _meta_backbone(name: str, **kwargs):
    with torch.device("meta"):
        return surgenet.load_backbone(name, pretrained=False, **kwargs).eval()


def _meta_input(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


@pytest.mark.parametrize("name", surgenet.list_models())
def test_feature_maps_have_the_documented_shapes(name):
    entry = REGISTRY[name]
    bb = _meta_backbone(name)
    h, w = 64, 96
    feats = bb(_meta_input(1, 3, h, w))
    assert len(feats) == len(bb.feature_info.channels()) == 4
    if entry.family == "vit":
        size, patch = re.match(r"vit_(small|base|large)_patch(\d+)_", entry.arch).groups()
        dim, patch = VIT_DIM[size], int(patch)
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
    bb = _meta_backbone("surgenetxl-dinov2-vits14", vit_pyramid=True)
    feats = bb(_meta_input(2, 3, 128, 160))
    assert bb.feature_info.reduction() == [4, 8, 16, 32]
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 40), (16, 20), (8, 10), (4, 5)]


def test_out_indices_select_stages_and_are_validated():
    bb = _meta_backbone("surgenet-convnextv2", out_indices=(1, 3))
    assert bb.feature_info.channels() == [192, 768]
    assert [f.shape[1] for f in bb(_meta_input(1, 3, 64, 64))] == [192, 768]
    with pytest.raises(ValueError, match="out of range"):
        _meta_backbone("surgenet-convnextv2", out_indices=(4,))


def test_wrong_input_is_a_clear_error():
    bb = _meta_backbone("surgenet-pvtv2")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        bb(_meta_input(3, 64, 64))
