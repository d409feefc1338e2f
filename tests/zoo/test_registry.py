"""The registry: names, required fields, suggestions, and metadata checked against the networks."""

from __future__ import annotations

import pytest
import torch

import surgenet
from surgenet.zoo.backbones import ARCHITECTURES, create_network
from surgenet.exceptions import UnknownModelError
from surgenet.zoo.registry import REGISTRY

DESIGN_NAMES = {
    "surgenetxl-caformer", "surgenet-caformer", "surgenet-small-caformer", "surgenet-public-caformer",
    "surgenet-cholec-caformer", "surgenet-ramie-caformer", "surgenet-rarp-caformer",
    "surgenet-convnextv2", "surgenet-pvtv2",
    "surgenetxl-dinov1-vits16", "surgenetxl-dinov1-vitb16",
    "surgenetxl-dinov2-vits14", "surgenetxl-dinov2-vitb14", "surgenetxl-dinov2-vitl14",
    "surgenetxl-dinov3-vits16", "surgenetxl-dinov3-vitb16", "surgenetxl-dinov3-vitl16",
    "vit-msn-small",  # the MSN seed's ImageNet starting point (issue 14)
}
REQUIRED = ("name", "arch", "repo_id", "filename", "revision", "layout", "input_size", "mean", "std",
            "license", "paper", "pretraining_data")


def test_zoo_holds_exactly_the_released_models():
    assert set(surgenet.list_models()) == DESIGN_NAMES


def test_every_entry_has_the_required_fields():
    for name in surgenet.list_models():
        info = surgenet.model_info(name)
        for field in REQUIRED:
            assert info[field] not in (None, "", []), (name, field)
        assert info["arch"] in ARCHITECTURES
        assert len(info["mean"]) == len(info["std"]) == 3


def test_released_files_match_the_reference_table():
    assert surgenet.model_info("surgenetxl-caformer")["filename"] == "SurgeNetXL_checkpoint_epoch0050_teacher.pth"
    # the official loader points at the full checkpoint for Public; we serve the teacher file
    assert surgenet.model_info("surgenet-public-caformer")["filename"] == "Public_checkpoint_epoch0050_teacher.pth"
    assert surgenet.model_info("surgenetxl-dinov2-vitl14")["repo_id"] == "rlpddejong/SurgeNetXL_DINOv1-v3"
    assert surgenet.model_info("surgenetxl-dinov3-vitb16")["input_size"] == [3, 336, 336]


def test_list_models_filters():
    assert surgenet.list_models("surgenetxl-dinov2-*") == [
        "surgenetxl-dinov2-vits14", "surgenetxl-dinov2-vitb14", "surgenetxl-dinov2-vitl14"]
    assert set(surgenet.list_models(family="caformer")) == {n for n in DESIGN_NAMES if n.endswith("caformer")}


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match="surgenetxl-caformer") as info:
        surgenet.model_info("surgenetxl-cafomer")
    assert "list_models" in str(info.value)
    with pytest.raises(KeyError):  # also a KeyError, as dict users expect
        surgenet.model_info("no-such-model")


def test_underscored_names_resolve():
    assert surgenet.model_info("surgenetxl_caformer")["name"] == "surgenetxl-caformer"


@pytest.mark.parametrize("name", sorted(DESIGN_NAMES))
def test_num_params_matches_the_network(name):
    entry = REGISTRY[name]
    with torch.device("meta"):
        net = create_network(entry.arch)
    assert sum(p.numel() for p in net.parameters()) == entry.num_params


@pytest.mark.parametrize("name", ["surgenetxl-caformer", "surgenet-pvtv2", "surgenetxl-dinov1-vits16"])
def test_recorded_gflops_match_a_count_of_the_network(name, monkeypatch):
    import timm.layers.config as timm_config
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setattr(timm_config, "_USE_FUSED_ATTN", 0)  # the counter cannot see into fused attention
    bb = surgenet.load_backbone(name, pretrained=False).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        bb(torch.randn(1, 3, 256, 256))
    assert counter.get_total_flops() / 1e9 == pytest.approx(REGISTRY[name].gflops_256, rel=0.01)
