"""Segmentation loss for imbalanced classes: cross-entropy plus soft Dice, both blind to ignored pixels.

Why both: cross-entropy sums over pixels, so a structure covering 1 % of a frame (cystic artery,
cystic duct) contributes about 1 % of the gradient and the network can ignore it at little cost.
Soft Dice is a ratio per class, so every class that is present weighs the same whatever its area
(the nnU-Net default, Isensee et al. 2021). Cross-entropy keeps the per-pixel gradients well
behaved early on, when Dice alone is noisy. Class weights would need per-dataset pixel counts and
tuning; Dice needs neither.

Soft Dice here is the batch ("global") Dice of each class c over the valid pixels of the batch::

    dice_c = (2 * sum(p_c * y_c) + eps) / (sum(p_c) + sum(y_c) + eps)

with ``p_c`` the softmax probability and ``y_c`` the one-hot target, averaged over the classes
that occur in the batch's target (an absent class has no overlap to learn from; its
probabilities are still pushed down by the cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                   eps: float = 1.0) -> torch.Tensor:
    """``1 - mean_c dice_c`` over the classes present in ``target`` (``(N, C, H, W)`` logits, ``(N, H, W)``
    class ids); 0 when no pixel is valid."""
    num_classes = logits.shape[1]
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    probs = logits.float().softmax(1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2).float() * valid[:, None]
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    present = onehot.sum(dims) > 0
    return 1.0 - dice[present].mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                 dice_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy (ignoring ``ignore_index``) plus ``dice_weight`` times :func:`soft_dice_loss`."""
    logits = logits.float()
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    if dice_weight == 0:
        return ce
    return ce + dice_weight * soft_dice_loss(logits, target, ignore_index)
