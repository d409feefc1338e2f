"""Each layout converter maps the original keys onto timm's exactly, and is idempotent."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from surgenet.zoo.backbones import create_network
from surgenet.zoo.converters import CONVERTERS
from tests.reference.convnextv2_ref import ConvNeXtV2Ref
from tests.reference.metaformer_ref import SurgeNetCAFormerRef
from tests.reference.pvtv2_ref import PVTv2Ref
from tests.reference.vit_ref import dinov2_ref

CASES = [
    ("metaformer", "caformer_s18_surgenet", lambda: SurgeNetCAFormerRef()),
    ("convnextv2", "convnextv2_tiny", lambda: ConvNeXtV2Ref(num_classes=0)),
    ("pvtv2", "pvt_v2_b2", lambda: PVTv2Ref(num_classes=0)),
]


@pytest.mark.parametrize("layout,arch,make_ref", CASES, ids=[c[0] for c in CASES])
def test_original_keys_map_onto_timm_exactly(layout, arch, make_ref):
    original = make_ref().state_dict()
    converted, dropped = CONVERTERS[layout](original)
    target = create_network(arch).state_dict()
    assert set(converted) == set(target)
    assert dropped == []
    for key, value in converted.items():
        assert value.numel() == target[key].numel(), key


@pytest.mark.parametrize("layout,arch,make_ref", CASES, ids=[c[0] for c in CASES])
def test_converters_are_idempotent(layout, arch, make_ref, monkeypatch):
    module = importlib.import_module(f"surgenet.zoo.converters.{layout}")
    once, _ = CONVERTERS[layout](make_ref().state_dict())
    # The renaming rules themselves, with the "already timm" short-circuit switched off: converted
    # keys must come out of them unchanged.
    monkeypatch.setattr(module, "is_timm", lambda sd: False)
    renamed = module.convert(once)
    assert list(renamed) == list(once)
    assert all(torch.equal(once[k], renamed[k]) for k in once)
    # The short-circuit fires on timm's keys only, and returns them as they are.
    monkeypatch.undo()
    assert module.is_timm(once) and not module.is_timm(make_ref().state_dict())
    twice, dropped = CONVERTERS[layout](once)
    assert dropped == [] and list(twice) == list(once) and all(twice[k] is once[k] for k in once)


def test_metaformer_short_circuit_keeps_timms_own_head_norm():
    # Why the short-circuit exists: timm's `head.norm` has the name of the authors' classifier norm,
    # which the full conversion drops; without the check a converted dict would lose it.
    once, _ = CONVERTERS["metaformer"](SurgeNetCAFormerRef().state_dict())
    no_check = dataclasses.replace(CONVERTERS["metaformer"], is_timm=lambda sd: False)
    _, dropped = no_check(once)
    assert sorted(dropped) == ["head.norm.bias", "head.norm.weight"]
    assert "head.norm.weight" in CONVERTERS["metaformer"](once)[0]


def test_metaformer_converter_names_the_authors_classifier_it_drops():
    sd = SurgeNetCAFormerRef().state_dict()
    sd.update({"head.fc1.weight": torch.zeros(2048, 512), "head.fc1.bias": torch.zeros(2048),
               "head.norm.weight": torch.ones(2048), "head.norm.bias": torch.zeros(2048),
               "head.fc2.weight": torch.zeros(4, 2048), "head.fc2.bias": torch.zeros(4)})
    converted, dropped = CONVERTERS["metaformer"](sd)
    assert sorted(dropped) == sorted(k for k in sd if k.startswith("head.fc") or k.startswith("head.norm"))
    assert "head.norm.weight" in converted  # the backbone's own output norm, mapped from `norm.weight`
    assert torch.equal(converted["head.norm.weight"], sd["norm.weight"])


def test_dinov2_registers_move_class_position_into_the_class_token():
    ref = dinov2_ref(num_register_tokens=4, img_size=56, patch_size=14, embed_dim=32, depth=2, num_heads=2)
    sd = ref.state_dict()
    converted, dropped = CONVERTERS["dinov2"](sd)
    assert dropped == ["mask_token"]
    assert torch.equal(converted["cls_token"], sd["cls_token"] + sd["pos_embed"][:, :1])
    assert torch.equal(converted["pos_embed"], sd["pos_embed"][:, 1:])
    assert torch.equal(converted["reg_token"], sd["register_tokens"])
    again, _ = CONVERTERS["dinov2"](converted)
    assert all(torch.equal(again[k], converted[k]) for k in converted)


def test_dinov2_chunked_blocks_are_flattened():
    sd = {"blocks.1.7.norm1.weight": torch.ones(3), "register_tokens": torch.zeros(1, 4, 3),
          "cls_token": torch.zeros(1, 1, 3), "pos_embed": torch.zeros(1, 5, 3)}
    converted, _ = CONVERTERS["dinov2"](sd)
    assert "blocks.7.norm1.weight" in converted


def test_dinov3_meta_layout():
    dim = 8
    qkv_bias = torch.arange(3 * dim, dtype=torch.float32)
    sd = {
        "cls_token": torch.zeros(1, 1, dim), "storage_tokens": torch.ones(1, 4, dim), "mask_token": torch.zeros(1, dim),
        "rope_embed.periods": torch.ones(2), "blocks.0.attn.qkv.weight": torch.zeros(3 * dim, dim),
        "blocks.0.attn.qkv.bias": qkv_bias,
        "blocks.0.attn.qkv.bias_mask": torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)]),
        "blocks.0.ls1.gamma": torch.full((dim,), 2.0), "blocks.0.ls2.gamma": torch.full((dim,), 3.0),
    }
    converted, dropped = CONVERTERS["dinov3"](sd)
    assert sorted(dropped) == ["mask_token"]
    assert torch.equal(converted["rope.periods"], sd["rope_embed.periods"])  # kept: Meta computes with it
    assert not any("bias_mask" in k for k in converted)
    assert torch.equal(converted["reg_token"], sd["storage_tokens"])
    assert torch.equal(converted["blocks.0.attn.q_bias"], qkv_bias[:dim])
    assert torch.equal(converted["blocks.0.attn.k_bias"], torch.zeros(dim))  # masked
    assert torch.equal(converted["blocks.0.attn.v_bias"], qkv_bias[2 * dim:])
    unmasked, _ = CONVERTERS["dinov3"]({k: v for k, v in sd.items() if k != "blocks.0.attn.qkv.bias_mask"})
    assert torch.equal(unmasked["blocks.0.attn.k_bias"], qkv_bias[dim:2 * dim])  # SurgeNetDINO: learned
    assert torch.equal(converted["blocks.0.gamma_1"], sd["blocks.0.ls1.gamma"])
    assert torch.equal(converted["blocks.0.gamma_2"], sd["blocks.0.ls2.gamma"])
    again, _ = CONVERTERS["dinov3"](converted)
    assert set(again) == set(converted)
