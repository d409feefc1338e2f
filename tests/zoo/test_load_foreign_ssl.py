"""Backbones from timm names, PyTorch Lightning SimCLR/BYOL checkpoints and the transformers
ViT-MSN layout: strict loads that give the features of the network the weights came from."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn

import surgenet
from surgenet.zoo.backbones import FeatureBackbone, create_network
from surgenet.exceptions import InputError, KeyMismatchError, UnknownModelError

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def features(backbone: nn.Module) -> list[torch.Tensor]:
    with torch.no_grad():
        return backbone.eval()(X)


def test_timm_names_build_four_level_backbones():
    bb = surgenet.load_backbone("resnet18", pretrained=False)
    assert bb.reductions == [4, 8, 16, 32] and bb.out_channels == [64, 128, 256, 512]
    assert [f.shape[-1] for f in features(bb)] == [16, 8, 4, 2]
    vit = surgenet.load_backbone("vit_tiny_patch16_224", pretrained=False, depth=4)
    assert vit.is_vit and vit.out_indices == (0, 1, 2, 3)
    assert features(vit)[0].shape == (2, 192, 4, 4)  # dynamic size: 64 px is 4 x 4 patches


def test_timm_names_have_no_released_weights_and_typos_get_suggestions():
    with pytest.raises(InputError, match="pretrained=False"):
        surgenet.load_backbone("resnet18")
    with pytest.raises(UnknownModelError, match="'resnet50'"):
        surgenet.load_backbone("resnet5o", pretrained=False)


def lightly_style_module(backbone: nn.Module) -> nn.Module:
    """The attributes of a lightly/Lightning BYOL module: online and momentum networks and heads."""
    module = nn.Module()
    module.backbone = backbone
    module.projection_head = nn.Sequential(nn.Linear(512, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))
    module.prediction_head = nn.Linear(16, 16)
    module.backbone_momentum = create_network("resnet18")
    module.projection_head_momentum = nn.Linear(512, 16)
    return module


def lightning_checkpoint(module: nn.Module) -> dict:
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0", "state_dict": module.state_dict(),
            "optimizer_states": [], "lr_schedulers": []}


def test_a_lightning_byol_checkpoint_loads_its_online_backbone_strictly(tmp_path):
    torch.manual_seed(0)
    network = create_network("resnet18")
    path = tmp_path / "byol.ckpt"
    torch.save(lightning_checkpoint(lightly_style_module(network)), path)
    loaded = surgenet.load_backbone("resnet18", weights=path)
    for a, b in zip(features(loaded), features(FeatureBackbone(network, "resnet18"))):
        assert torch.equal(a, b)
    model = surgenet.load_model("resnet18", task="cvs", weights=path).eval()  # a task model on it, in one line
    for a, b in zip(features(model.backbone), features(loaded)):
        assert torch.equal(a, b)
    # A torchvision-style backbone, nn.Sequential(*children[:-1]), with numbered keys.
    seq = nn.Sequential(*list(network.children())[:-2])
    module = nn.Module()
    module.convnet = seq
    module.projector = nn.Linear(512, 8)
    torch.save(lightning_checkpoint(module), tmp_path / "simclr.ckpt")
    again = surgenet.load_backbone("resnet18", weights=tmp_path / "simclr.ckpt")
    for a, b in zip(features(again), features(loaded)):
        assert torch.equal(a, b)
    # Strict: a missing backbone tensor is named.
    broken = lightning_checkpoint(lightly_style_module(network))
    del broken["state_dict"]["backbone.layer4.1.bn2.weight"]
    torch.save(broken, tmp_path / "broken.ckpt")
    with pytest.raises(KeyMismatchError, match=re.escape("layer4.1.bn2.weight")):
        surgenet.load_backbone("resnet18", weights=tmp_path / "broken.ckpt")


def transformers_vit_msn_layout(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ViT keys written out the way transformers' ViTMSNModel names them (q, k, v apart)."""
    out = {"embeddings.cls_token": timm_state["cls_token"], "embeddings.position_embeddings": timm_state["pos_embed"],
           "embeddings.mask_token": torch.zeros(1, 1, timm_state["cls_token"].shape[-1]),
           "embeddings.patch_embeddings.projection.weight": timm_state["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": timm_state["patch_embed.proj.bias"],
           "layernorm.weight": timm_state["norm.weight"], "layernorm.bias": timm_state["norm.bias"]}
    depth = 1 + max(int(k.split(".")[1]) for k in timm_state if k.startswith("blocks."))
    for i in range(depth):
        b, hf = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = timm_state[b + "attn.qkv." + kind].chunk(3, dim=0)
            out.update({hf + "attention.attention.query." + kind: q, hf + "attention.attention.key." + kind: k,
                        hf + "attention.attention.value." + kind: v,
                        hf + "attention.output.dense." + kind: timm_state[b + "attn.proj." + kind],
                        hf + "intermediate.dense." + kind: timm_state[b + "mlp.fc1." + kind],
                        hf + "output.dense." + kind: timm_state[b + "mlp.fc2." + kind],
                        hf + "layernorm_before." + kind: timm_state[b + "norm1." + kind],
                        hf + "layernorm_after." + kind: timm_state[b + "norm2." + kind]})
    return out


def test_the_transformers_vit_msn_layout_loads_strictly_and_computes_the_same(tmp_path):
    from surgenet.zoo.converters import CONVERTERS

    torch.manual_seed(0)
    network = create_network("vit_small_patch16_msn", depth=2)
    hf = transformers_vit_msn_layout(network.state_dict())
    torch.save(hf, tmp_path / "pytorch_model.bin")
    torch.save({f"vit.{k}": v for k, v in hf.items()}, tmp_path / "task_model.bin")  # ViTMSNForImageClassification
    reference = features(FeatureBackbone(network, "vit_small_patch16_msn"))
    for name in ("pytorch_model.bin", "task_model.bin"):
        loaded = surgenet.load_backbone("vit-msn-small", weights=tmp_path / name, depth=2)
        for a, b in zip(features(loaded), reference):
            assert torch.equal(a, b)
    converted, dropped = CONVERTERS["vit_msn"](hf)
    assert dropped == ["embeddings.mask_token"]
    again, _ = CONVERTERS["vit_msn"](converted)  # idempotent
    assert again.keys() == converted.keys() and all(torch.equal(again[k], converted[k]) for k in again)
    del hf["encoder.layer.1.attention.attention.key.bias"]
    torch.save(hf, tmp_path / "broken.bin")
    with pytest.raises(KeyMismatchError, match=re.escape("blocks.1.attn.qkv.bias")):
        surgenet.load_backbone("vit-msn-small", weights=tmp_path / "broken.bin", depth=2)


def test_vit_msn_small_is_a_registry_entry_with_its_own_licence():
    info = surgenet.model_info("vit-msn-small")
    assert info["repo_id"] == "facebook/vit-msn-small" and info["license"] == "apache-2.0"
    assert info["layout"] == "vit_msn" and info["pretraining_method"] == "MSN"
    assert info["mean"] == [0.485, 0.456, 0.406] and info["input_size"] == [3, 224, 224]


def test_the_simclr_seed_frame_list_is_a_pretraining_source(tmp_path):
    from PIL import Image

    from surgenet.train.data import open_source

    for i in range(3):
        Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "frames.csv").write_text("".join(f"{tmp_path / f'{i}.jpg'},{i % 2}\n" for i in range(3)))
    source = open_source(tmp_path / "frames.csv")
    assert len(source) == 3 and source.load(2).getpixel((0, 0))[0] in range(75, 86)
