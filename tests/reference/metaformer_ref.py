"""Test-only independent reference of SurgeNet's CAFormer-S18 (sail-sg MetaFormer layout).

Written from scratch from the published MetaFormer/CAFormer description and the
SurgeNet variant (ReLU instead of StarReLU in SepConv and MLP); the state_dict
keys follow the original checkpoints (``downsample_layers.*``, ``stages.i.j.*``,
``norm``, ``head``).  Blocks work on NHWC tensors like the original.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .fpn_ref import FPNRef

DEPTHS = (3, 3, 9, 3)
DIMS = (64, 128, 320, 512)


class LayerNormNoBias(nn.Module):
    """LayerNorm over the last dim with a weight and no bias."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight


class Scale(nn.Module):
    """Per-channel learnable scale (last dim)."""

    def __init__(self, dim, init=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x):
        return x * self.scale


class StarReLU(nn.Module):
    """s * relu(x)**2 + b (original CAFormer activation; SurgeNet uses plain ReLU)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.scale * F.relu(x) ** 2 + self.bias


def _act(star_relu):
    return StarReLU() if star_relu else nn.ReLU()


class Downsampling(nn.Module):
    """[pre_norm (NHWC)] -> conv (NCHW) -> NHWC -> [post_norm]. Conv has a bias as in the original."""

    def __init__(self, cin, cout, k, s, p, pre_norm=False, post_norm=False):
        super().__init__()
        self.pre_norm = LayerNormNoBias(cin) if pre_norm else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, k, s, p)
        self.post_norm = LayerNormNoBias(cout) if post_norm else nn.Identity()
        self.nhwc_in = pre_norm

    def forward(self, x):
        x = self.pre_norm(x)
        if self.nhwc_in:
            x = x.permute(0, 3, 1, 2)
        x = self.conv(x).permute(0, 2, 3, 1)
        return self.post_norm(x)


class SepConv(nn.Module):
    """pwconv1 (dim->2dim) -> act1 -> depthwise 7x7 -> pwconv2 (2dim->dim), all bias-free."""

    def __init__(self, dim, star_relu=False):
        super().__init__()
        med = 2 * dim
        self.pwconv1 = nn.Linear(dim, med, bias=False)
        self.act1 = _act(star_relu)
        self.dwconv = nn.Conv2d(med, med, 7, padding=3, groups=med, bias=False)
        self.pwconv2 = nn.Linear(med, dim, bias=False)

    def forward(self, x):
        x = self.act1(self.pwconv1(x))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pwconv2(x)


class Attention(nn.Module):
    """Multi-head self-attention, head_dim 32, bias-free qkv and proj, explicit softmax(QK^T)V."""

    def __init__(self, dim, head_dim=32):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(1, dim // head_dim)
        self.qkv = nn.Linear(dim, 3 * self.num_heads * head_dim, bias=False)
        self.proj = nn.Linear(self.num_heads * head_dim, dim, bias=False)

    def forward(self, x):
        B, H, W, _ = x.shape
        n, h, d = H * W, self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(B, n, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * d ** -0.5, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, H, W, h * d)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 (ratio 4) -> act -> fc2, bias-free."""

    def __init__(self, dim, star_relu=False):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim, bias=False)
        self.act = _act(star_relu)
        self.fc2 = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MetaFormerBlock(nn.Module):
    """x = rs1(x) + mixer(norm1(x)); x = rs2(x) + mlp(norm2(x)) (res-scales only when enabled)."""

    def __init__(self, dim, attention, res_scale, star_relu=False):
        super().__init__()
        self.norm1 = LayerNormNoBias(dim)
        self.token_mixer = Attention(dim) if attention else SepConv(dim, star_relu)
        self.res_scale1 = Scale(dim) if res_scale else nn.Identity()
        self.norm2 = LayerNormNoBias(dim)
        self.mlp = Mlp(dim, star_relu)
        self.res_scale2 = Scale(dim) if res_scale else nn.Identity()

    def forward(self, x):
        x = self.res_scale1(x) + self.token_mixer(self.norm1(x))
        return self.res_scale2(x) + self.mlp(self.norm2(x))


class MlpHead(nn.Module):
    """fc1 (512->2048) -> squared ReLU -> LayerNorm -> fc2 (classification head of the original)."""

    def __init__(self, dim, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.norm = nn.LayerNorm(4 * dim)
        self.fc2 = nn.Linear(4 * dim, num_classes)

    def forward(self, x):
        return self.fc2(self.norm(F.relu(self.fc1(x)) ** 2))


class SurgeNetCAFormerRef(nn.Module):
    """CAFormer-S18 in the sail-sg layout; SurgeNet flavour (ReLU) unless ``star_relu=True``.

    ``num_classes > 0`` adds the original ``head`` (MlpHead); it is not used by
    ``forward_features`` / ``forward_pooled``.
    """

    def __init__(self, num_classes=0, star_relu=False):
        super().__init__()
        cins = (3,) + DIMS[:-1]
        self.downsample_layers = nn.ModuleList(
            [Downsampling(3, DIMS[0], 7, 4, 2, post_norm=True)]
            + [Downsampling(cins[i], DIMS[i], 3, 2, 1, pre_norm=True) for i in range(1, 4)]
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*[MetaFormerBlock(DIMS[i], i >= 2, i >= 2, star_relu) for _ in range(DEPTHS[i])])
            for i in range(4)
        )
        self.norm = nn.LayerNorm(DIMS[-1], eps=1e-6)
        if num_classes > 0:
            self.head = MlpHead(DIMS[-1], num_classes)

    def _stages(self, x):
        feats = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            feats.append(x)
        return feats  # NHWC

    def forward_features(self, x):
        """List of the 4 stage outputs, NCHW, strides 4/8/16/32."""
        return [f.permute(0, 3, 1, 2) for f in self._stages(x)]

    def forward_pooled(self, x):
        """Final LayerNorm of the spatially averaged last stage, (B, 512)."""
        return self.norm(self._stages(x)[-1].mean(dim=(1, 2)))

    def forward(self, x):
        pooled = self.forward_pooled(x)
        return self.head(pooled) if hasattr(self, "head") else pooled


class SurgeNetMetaFormerFPNRef(nn.Module):
    """The authors' MetaFormerFPN: ``metaformer`` (with its unused head) + ``FPN`` decoder."""

    def __init__(self, num_classes, star_relu=False):
        super().__init__()
        self.metaformer = SurgeNetCAFormerRef(num_classes=num_classes, star_relu=star_relu)
        self.FPN = FPNRef(DIMS, num_classes)

    def forward(self, x):
        return self.FPN(*self.metaformer.forward_features(x))
