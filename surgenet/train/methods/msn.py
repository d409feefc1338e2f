"""MSN (Assran et al. 2022) as a plugin: a ViT sees anchor views with a random share of their
patches dropped and must match, through learnable prototypes, the EMA target's sharpened
assignment of an unmasked view; ME-MAX keeps every prototype in use.

From lightly: ``MSNProjectionHead``, ``MSNLoss`` (prototype softmax, target sharpening,
optional Sinkhorn, mean-entropy maximisation) and ``random_token_mask``. The masked forward
pass is ours (see :func:`masked_embedding`), as are the views (see :meth:`MSN.views`)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ...exceptions import InputError
from ..multicrop import MultiCrop
from .base import PretrainMethod, build_backbone, ema_copy, embedding_std, initialise_backbone, view_specs


def masked_embedding(vit: nn.Module, images: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """The pooled embedding of a timm ViT that sees only ``1 - mask_ratio`` of the patches.

    Tokens are dropped after the position embedding (prefix tokens always kept), as MSN does.
    Written here rather than with lightly's ``MaskedVisionTransformerTIMM``: that wrapper
    re-initialises the weights and position embedding of the network it wraps (which would
    overwrite ``model.init`` weights) and adds a mask token that this method never uses (DDP
    refuses unused parameters). lightly's ``random_token_mask`` picks the patches.
    """
    from lightly.models.utils import get_at_index, random_token_mask

    x = vit._pos_embed(vit.patch_embed(images))  # (B, prefix + N, D), position embeddings added
    prefix = int(getattr(vit, "num_prefix_tokens", 1))
    if mask_ratio > 0:
        n = x.shape[1] - prefix
        keep, _ = random_token_mask((x.shape[0], n), mask_ratio, mask_class_token=True, device=x.device)
        if keep.shape[1] == 0:  # keep at least one patch
            keep = torch.argsort(torch.rand(x.shape[0], n, device=x.device), dim=1)[:, :1]
        head = torch.arange(prefix, device=x.device).expand(x.shape[0], prefix)
        x = get_at_index(x, torch.cat([head, keep + prefix], dim=1))
    x = vit.norm_pre(vit.patch_drop(x))
    x = vit.norm(vit.blocks(x))
    return vit.forward_head(x, pre_logits=True)


class MSNHead(nn.Module):
    """Projector and (online network only) the prototypes."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_prototypes: int = 0) -> None:
        super().__init__()
        from lightly.models.modules.heads import MSNProjectionHead

        self.projector = MSNProjectionHead(in_dim, hidden_dim, out_dim)
        if num_prototypes:
            self.prototypes = nn.Parameter(torch.empty(num_prototypes, out_dim))
            nn.init.trunc_normal_(self.prototypes, std=0.02)


class MSNStudent(nn.Module):
    """``forward(anchor_views)``: projections of the masked anchor views (one backbone pass per
    size) and the prototypes, returned so that DDP sees them used in the forward pass."""

    def __init__(self, backbone: nn.Module, head: MSNHead, mask_ratio: float) -> None:
        super().__init__()
        self.backbone, self.head, self.mask_ratio = backbone, head, mask_ratio

    def forward(self, views: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            batch = torch.cat(list(views[start:end]))
            embeddings.append(masked_embedding(self.backbone.model, batch, self.mask_ratio))
            start = end
        return self.head.projector(torch.cat(embeddings)), self.head.prototypes


class MSNTarget(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.projector(self.backbone.forward_embedding(x))


class MSN(PretrainMethod):
    name = "msn"
    progress_keys = ("embedding_std", "prototype_entropy")

    def __init__(self, config: Any, entry) -> None:
        super().__init__(config, entry)
        from lightly.loss import MSNLoss

        c = config.msn
        backbone = build_backbone(config, entry, config.model.drop_path_rate)
        if not backbone.is_vit:
            raise InputError(f"MSN masks ViT patch tokens, and {config.model.name} is not a ViT; use a ViT "
                             "(e.g. --set model.name=vit_small_patch16_224) or another --method.")
        if not 0 <= c.mask_ratio < 1:
            raise InputError(f"msn.mask_ratio must be in [0, 1), not {c.mask_ratio}.")
        initialise_backbone(backbone, config, entry)
        self.student = MSNStudent(backbone, MSNHead(backbone.embed_dim, c.hidden_dim, c.projection_dim,
                                                    c.num_prototypes), c.mask_ratio)
        target_head = MSNHead(backbone.embed_dim, c.hidden_dim, c.projection_dim)
        target_head.projector.load_state_dict(self.student.head.projector.state_dict())
        self.teacher = ema_copy(MSNTarget(self.student.backbone, self.student.head), head=target_head,
                                backbone=build_backbone(config, entry, 0.0))
        self.teacher.train()  # batch statistics in the projector's BatchNorm, as the online network
        self.loss_fn = MSNLoss(temperature=c.temperature, sinkhorn_iterations=c.sinkhorn_iterations,
                               regularization_weight=c.me_max_weight, gather_distributed=True)

    def views(self) -> MultiCrop:
        """A target view and an anchor view (random crops), then the focal views (small crops);
        seeded, not lightly's ``MSNTransform``."""
        c = self.config.msn
        specs = view_specs(c.random_size, c.random_scale, 2, c) + view_specs(c.focal_size, c.focal_scale,
                                                                             c.focal_views, c)
        return self.seeded_views(specs)

    def forward(self, model: nn.Module, crops: list[torch.Tensor], values: dict[str, float]):
        with torch.no_grad():
            targets = self.teacher(crops[0])
        anchors, prototypes = model(crops[1:])
        return anchors, targets, prototypes

    def compute_loss(self, outputs, values: dict[str, float], ncrops: int):
        anchors, targets, prototypes = (t.float() for t in outputs)
        c = self.config.msn
        # MSN's target temperature as lightly's sharpening exponent: p^(tau / tau_target).
        loss = self.loss_fn(anchors, targets, prototypes, target_sharpen_temperature=c.target_temperature
                            / c.temperature)
        with torch.no_grad():
            a = nn.functional.normalize(anchors, dim=1) @ nn.functional.normalize(prototypes, dim=1).T
            mean_p = torch.softmax(a / c.temperature, dim=1).mean(0)
            entropy = -(mean_p * mean_p.clamp_min(1e-30).log()).sum()
        return loss, {"embedding_std": embedding_std(targets), "prototype_entropy": entropy}


METHOD = MSN
