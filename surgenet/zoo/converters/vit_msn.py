"""Hugging Face transformers ViT layout (``ViTMSNModel``, e.g. ``facebook/vit-msn-small``) to timm's ViT.

transformers keeps query, key and value as three linear layers and names everything after the
BERT encoder (``encoder.layer.N.attention.attention.query``, ``layernorm_before``, ...); timm
fuses them into ``blocks.N.attn.qkv`` in the order q, k, v.
"""

from __future__ import annotations

import re

import torch

# The mask token of the transformers model (used by its own masked pretraining head only).
UNUSED = (r"(vit\.)?embeddings\.mask_token",)

_RENAMES = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
)
_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")


def is_timm(state_dict: dict[str, torch.Tensor]) -> bool:
    return "cls_token" in state_dict and not any(k.startswith(("embeddings.", "vit.")) for k in state_dict)


def convert(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename to timm's keys; ``vit.`` (the prefix of transformers' task models) is stripped."""
    if is_timm(state_dict):
        return dict(state_dict)
    sd = {k[len("vit."):] if k.startswith("vit.") else k: v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        match = _QKV.match(key)
        if match:
            block, part, kind = match.groups()
            qkv.setdefault((block, kind), {})[part] = value
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        out[new] = value
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            out.update({f"encoder.layer.{block}.attention.attention.{p}.{kind}": v for p, v in parts.items()})
            continue  # incomplete: left under its own name, so strict loading reports it
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out
