"""Test-only independent reference of ConvNeXt-V2 tiny (facebookresearch ConvNeXt-V2 layout).

Written from scratch from the ConvNeXt-V2 paper description (GRN block) with the
original checkpoint keys (``downsample_layers.*``, ``stages.i.j.*``, ``norm``,
``head``).  ``ConvNextFPNRef`` is the SurgeNet ``convnext`` + ``FPN`` model.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .fpn_ref import FPNRef

DEPTHS = (3, 3, 9, 3)
DIMS = (96, 192, 384, 768)


class LayerNormCF(nn.Module):
    """LayerNorm over the channel dim of an NCHW tensor (weight and bias), eps 1e-6."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalization on NHWC: gamma * (x * Nx) + beta + x."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x):
        gx = torch.sqrt((x * x).sum(dim=(1, 2), keepdim=True))
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """dwconv7x7 -> NHWC -> LN -> pwconv1 (4x) -> GELU -> GRN -> pwconv2 -> NCHW, + residual."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = F.layer_norm(y, (y.shape[-1],), self.norm.weight, self.norm.bias, self.norm.eps)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2Ref(nn.Module):
    """ConvNeXt-V2 (tiny by default); ``num_classes=0`` drops ``head``."""

    def __init__(self, num_classes=1000, depths=DEPTHS, dims=DIMS):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNormCF(dims[0]))]
            + [nn.Sequential(LayerNormCF(dims[i - 1]), nn.Conv2d(dims[i - 1], dims[i], 2, 2)) for i in range(1, 4)]
        )
        self.stages = nn.ModuleList(nn.Sequential(*[Block(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        if num_classes > 0:
            self.head = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x):
        """List of the 4 stage outputs, NCHW, strides 4/8/16/32."""
        feats = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            feats.append(x)
        return feats

    def forward_pooled(self, x):
        """Final LayerNorm of the global-average-pooled last stage."""
        return self.norm(self.forward_features(x)[-1].mean(dim=(2, 3)))

    def forward(self, x):
        pooled = self.forward_pooled(x)
        return self.head(pooled) if hasattr(self, "head") else pooled


class ConvNextFPNRef(nn.Module):
    """The authors' ConvNextFPN: ``convnext`` (head with ``num_classes`` outputs, unused) + ``FPN``."""

    def __init__(self, num_classes):
        super().__init__()
        self.convnext = ConvNeXtV2Ref(num_classes=num_classes)
        self.FPN = FPNRef(DIMS, num_classes)

    def forward(self, x):
        return self.FPN(*self.convnext.forward_features(x))
