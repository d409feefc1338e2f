"""DINO v1, DINOv2 and DINOv3 ViT layouts (facebookresearch) to timm's layouts."""

from __future__ import annotations

import re

import torch

# Pretraining-only tensors: DINOv2/v3 mask token and DINOv3's local-crop class norm. (The key-bias
# mask of Meta's DINOv3 runs is applied by convert_dinov3; its RoPE periods are kept: the file's
# bf16 values are what Meta's code computes with, see surgenet/zoo/backbones/rope.py.)
UNUSED = (r"mask_token", r"local_cls_norm\.(weight|bias)", r"head\.(weight|bias)")


def convert_dinov1(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINO v1 ViTs already use timm's names (``cls_token``, ``pos_embed``, ``blocks.N``)."""
    return dict(state_dict)


def _unchunk(key: str) -> str:
    # DINOv2 may save blocks in chunks (``blocks.<chunk>.<index>``, index global).
    return re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)


def convert_dinov2(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Registers -> ``reg_token``; the class token absorbs its position embedding (timm's
    ``no_embed_class`` layout, where neither class nor register tokens carry position)."""
    if "reg_token" in state_dict or "register_tokens" not in state_dict:
        return {_unchunk(k): v for k, v in state_dict.items()}
    out = {}
    pos = state_dict["pos_embed"]
    for key, value in state_dict.items():
        if key == "register_tokens":
            out["reg_token"] = value
        elif key == "cls_token":
            out["cls_token"] = value + pos[:, :1]
        elif key == "pos_embed":
            out["pos_embed"] = value[:, 1:]
        else:
            out[_unchunk(key).replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = value
    return out


def convert_dinov3(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Storage tokens -> ``reg_token``, ``lsN.gamma`` -> ``gamma_N``, ``rope_embed.periods`` ->
    ``rope.periods`` (kept as stored), the fused qkv bias split
    into ``q_bias``/``k_bias``/``v_bias``. Where the file has a ``bias_mask`` (Meta's runs with
    ``mask_k_bias``) it is applied, so a masked key bias loads as the zero it computes with. A
    file without biases gets zero biases, which computes the same function."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(".attn.qkv.bias_mask"):
            continue
        new = "rope.periods" if key == "rope_embed.periods" else key.replace("storage_tokens", "reg_token")
        new = re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", new)
        if new.endswith(".attn.qkv.bias"):
            mask = state_dict.get(key + "_mask")
            if mask is not None:
                value = value * mask.to(value.dtype)
            for name, part in zip(("q_bias", "k_bias", "v_bias"), value.chunk(3, dim=-1)):
                out[new.replace("qkv.bias", name)] = part
            continue
        out[new] = value
    for key in [k for k in out if k.endswith(".attn.qkv.weight")]:
        dim = out[key].shape[-1]
        for name in ("q_bias", "k_bias", "v_bias"):
            out.setdefault(key.replace("qkv.weight", name), torch.zeros(dim, dtype=out[key].dtype))
    return out
