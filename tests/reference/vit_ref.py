"""Test-only minimal independent reference ViT in the DINO v1 / DINOv2 checkpoint layouts.

Written from scratch from the ViT / DINO / DINOv2(-registers) descriptions:
``cls_token``, ``pos_embed``, optional ``register_tokens`` (inserted after the
cls token, no positional embedding), optional ``mask_token`` (unused),
``patch_embed.proj``, ``blocks.i.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,
mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``.  Only the pos-embed grid size is
supported (no interpolation).
"""
import torch
import torch.nn.functional as F
from torch import nn


def _ln(x, norm):
    return F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)


class PatchEmbed(nn.Module):
    """Non-overlapping conv patchify -> (B, N, D)."""

    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with biased qkv/proj, explicit softmax(QK^T / sqrt(d)) V."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        qkv = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * d ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel ``gamma`` (DINOv2 layer scale)."""

    def __init__(self, dim, init=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    """x = x + ls1(attn(norm1(x))); x = x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim, heads, mlp_ratio, layer_scale):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(_ln(x, self.norm1)))
        return x + self.ls2(self.mlp(_ln(x, self.norm2)))


class ViTRef(nn.Module):
    """Plain ViT; DINO v1 layout by default, DINOv2 with ``layer_scale=True, mask_token=True``
    (plus ``num_register_tokens > 0`` for the register variants)."""

    def __init__(self, img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0,
                 num_register_tokens=0, layer_scale=False, mask_token=False):
        super().__init__()
        self.grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, embed_dim))
        if num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, layer_scale) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward_tokens(self, x):
        """Final normed tokens (B, 1 + R + N, D): [cls, registers..., patches...]."""
        x = self.patch_embed(x)
        if x.shape[1] != self.grid ** 2:
            raise ValueError("ViTRef only supports the pos-embed grid size")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        if hasattr(self, "register_tokens"):
            regs = self.register_tokens.expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], regs, x[:, 1:]], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return _ln(x, self.norm)

    forward = forward_tokens


def dino_v1_ref(**kw):
    """DINO v1 layout (no layer scale, no mask token, no registers)."""
    return ViTRef(**kw)


def dinov2_ref(num_register_tokens=0, **kw):
    """DINOv2 layout (layer scale ``ls1/ls2.gamma``, ``mask_token``, optional registers)."""
    return ViTRef(num_register_tokens=num_register_tokens, layer_scale=True, mask_token=True, **kw)
