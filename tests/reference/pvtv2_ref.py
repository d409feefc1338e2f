"""Test-only independent reference of PVTv2-B2 (whai362/PVT layout).

Written from scratch from the PVTv2 paper description (overlapping patch
embedding, spatial-reduction attention, conv-FFN) with the original checkpoint
keys (``patch_embed{i}``, ``block{i}.j``, ``norm{i}``, ``head``).

eps: block/stage norms use 1e-6 (the b2 config's norm_layer), while the patch
embedding ``norm`` and the attention ``sr`` ``norm`` are plain ``nn.LayerNorm``
(eps 1e-5) in the original code; both are configurable.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .fpn_ref import FPNRef

EMBED_DIMS = (64, 128, 320, 512)
NUM_HEADS = (1, 2, 5, 8)
MLP_RATIOS = (8, 8, 4, 4)
DEPTHS = (3, 4, 6, 3)
SR_RATIOS = (8, 4, 2, 1)


def _ln(x, norm):
    return F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)


def _to_nchw(x, H, W):
    B, _, C = x.shape
    return x.transpose(1, 2).reshape(B, C, H, W)


class OverlapPatchEmbed(nn.Module):
    """Overlapping conv patch embedding -> tokens -> LayerNorm."""

    def __init__(self, cin, dim, patch, stride, eps):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, patch, stride, patch // 2)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x):
        x = self.proj(x)
        H, W = x.shape[-2:]
        return _ln(x.flatten(2).transpose(1, 2), self.norm), H, W


class Attention(nn.Module):
    """Spatial-reduction attention: queries from all tokens, keys/values from sr-conv-reduced tokens."""

    def __init__(self, dim, heads, sr, sr_eps):
        super().__init__()
        self.heads, self.sr_ratio = heads, sr
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim, eps=sr_eps)

    def forward(self, x, H, W):
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        q = self.q(x).reshape(B, N, h, d).transpose(1, 2)
        src = x
        if self.sr_ratio > 1:
            src = _ln(self.sr(_to_nchw(x, H, W)).flatten(2).transpose(1, 2), self.norm)
        kv = self.kv(src).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * d ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class DWConv(nn.Module):
    """Depthwise 3x3 conv applied to tokens reshaped to NCHW."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x, H, W):
        return self.dwconv(_to_nchw(x, H, W)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """fc1 -> depthwise conv -> GELU -> fc2."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, H, W):
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), H, W)))


class Block(nn.Module):
    """Pre-norm transformer block with SR attention and conv-FFN."""

    def __init__(self, dim, heads, mlp_ratio, sr, eps, sr_eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, sr, sr_eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, H, W):
        x = x + self.attn(_ln(x, self.norm1), H, W)
        return x + self.mlp(_ln(x, self.norm2), H, W)


class PVTv2Ref(nn.Module):
    """PVTv2-B2; ``num_classes=0`` drops ``head``."""

    def __init__(self, num_classes=1000, eps=1e-6, embed_eps=1e-5, sr_eps=1e-5):
        super().__init__()
        cins = (3,) + EMBED_DIMS[:-1]
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(cins[i], EMBED_DIMS[i], patch, stride, embed_eps))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(EMBED_DIMS[i], NUM_HEADS[i], MLP_RATIOS[i], SR_RATIOS[i], eps, sr_eps) for _ in range(DEPTHS[i])
            ))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(EMBED_DIMS[i], eps=eps))
        if num_classes > 0:
            self.head = nn.Linear(EMBED_DIMS[-1], num_classes)

    def _run(self, x):
        feats = []
        for i in range(1, 5):
            x, H, W = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, H, W)
            x = _ln(x, getattr(self, f"norm{i}"))
            feats.append((x, H, W))
            x = _to_nchw(x, H, W)
        return feats

    def forward_features(self, x):
        """List of the 4 normed stage outputs, NCHW, strides 4/8/16/32."""
        return [_to_nchw(t, H, W) for t, H, W in self._run(x)]

    def forward_pooled(self, x):
        """Token mean of the normed last stage (the original classification feature)."""
        return self._run(x)[-1][0].mean(dim=1)

    def forward(self, x):
        pooled = self.forward_pooled(x)
        return self.head(pooled) if hasattr(self, "head") else pooled


class PVTV2FPNRef(nn.Module):
    """The authors' PVTV2FPN: ``pvtv2`` (head with ``num_classes`` outputs, unused) + ``FPN``."""

    def __init__(self, num_classes, **kw):
        super().__init__()
        self.pvtv2 = PVTv2Ref(num_classes=num_classes, **kw)
        self.FPN = FPNRef(EMBED_DIMS, num_classes)

    def forward(self, x):
        return self.FPN(*self.pvtv2.forward_features(x))
