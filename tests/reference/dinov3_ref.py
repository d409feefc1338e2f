"""Test-only minimal independent reference DINOv3 ViT in Meta's checkpoint layout.

Written from scratch from the DINOv3 description (facebookresearch/dinov3) and the SurgeNetDINO
pretraining configs: patch embedding, ``cls_token``, optional ``storage_tokens`` (after the class
token), ``mask_token`` (unused at inference), no absolute position embedding; 2-D RoPE on the
patch tokens only (base 100, coordinates of patch centres scaled to [-1, 1] per axis, periods
``base ** (2i / (D_head / 2))`` evaluated in the run's RoPE dtype, bf16 for SurgeNetDINO, rotate-half
layout), stored as the ``rope_embed.periods`` buffer and used in fp32 as Meta's hub loader does;
blocks ``x + ls1(attn(norm1(x)))``, ``x + ls2(mlp(norm2(x)))`` with a fused qkv whose bias may be
masked on the key part (``qkv.bias_mask``, Meta's ``mask_k_bias``); LayerNorm eps 1e-6 and a
final ``norm`` on every token. Explicit softmax attention, no timm.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def _rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RopeEmbed(nn.Module):
    """Meta's ``RopePositionEmbedding`` (base 100, ``normalize_coords: separate``): the periods are
    computed in the run's RoPE dtype (SurgeNetDINO: ``pos_embed_rope_dtype: bf16``, so in bf16
    arithmetic) and kept as a persistent buffer of that dtype; the forward is Meta's hub style, the
    stored values copied to fp32 and everything computed in fp32."""

    def __init__(self, head_dim, base=100.0, dtype=torch.bfloat16):
        super().__init__()
        periods = base ** (2 * torch.arange(head_dim // 4, dtype=dtype) / (head_dim // 2))
        self.register_buffer("periods", periods)

    def forward(self, h, w):
        periods = self.periods.float()
        ys = torch.arange(0.5, h) / h
        xs = torch.arange(0.5, w) / w
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(h * w, 2) * 2.0 - 1.0
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (HW, 2, D/4)
        angles = angles.reshape(h * w, -1)
        angles = torch.cat([angles, angles], dim=-1)  # (HW, D)
        return angles.sin(), angles.cos()


class Attention(nn.Module):
    def __init__(self, dim, heads, mask_k_bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        if mask_k_bias:
            mask = torch.ones(3 * dim)
            mask[dim:2 * dim] = 0
            self.qkv.register_buffer("bias_mask", mask)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope, prefix):
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        bias = self.qkv.bias * self.qkv.bias_mask if hasattr(self.qkv, "bias_mask") else self.qkv.bias
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
        sin, cos = rope

        def rot(t):
            return torch.cat([t[:, :, :prefix], t[:, :, prefix:] * cos + _rotate_half(t[:, :, prefix:]) * sin], dim=2)

        q, k = rot(q), rot(k)
        attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mask_k_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, mask_k_bias)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x, rope, prefix):
        x = x + self.ls1(self.attn(self.norm1(x), rope, prefix))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DINOv3Ref(nn.Module):
    def __init__(self, patch_size=16, embed_dim=384, depth=12, num_heads=6, n_storage_tokens=0, mask_k_bias=False,
                 rope_dtype=torch.bfloat16):
        super().__init__()
        self.patch_size = patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if n_storage_tokens:
            self.storage_tokens = nn.Parameter(torch.zeros(1, n_storage_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.rope_embed = RopeEmbed(embed_dim // num_heads, dtype=rope_dtype)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mask_k_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    @property
    def num_prefix(self):
        return 1 + (self.storage_tokens.shape[1] if hasattr(self, "storage_tokens") else 0)

    def forward_blocks(self, x):
        """Normed tokens (B, prefix + HW, D) after every block: [cls, storage..., patches...]."""
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if hasattr(self, "storage_tokens"):
            prefix.append(self.storage_tokens.expand(x.shape[0], -1, -1))
        t = torch.cat([*prefix, tokens], dim=1)
        rope = self.rope_embed(h, w)
        outs = []
        for blk in self.blocks:
            t = blk(t, rope, self.num_prefix)
            outs.append(self.norm(t))
        return outs
