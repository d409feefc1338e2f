"""The distillation loss: a temperature-scaled KL divergence to the teacher's soft predictions.

Hinton et al. (2015): with temperature ``T`` the teacher's distribution ``p = softmax(t / T)``
and the student's ``q = softmax(s / T)``, the imitation term is ``T^2 * KL(p || q)``; the
``T^2`` keeps its gradients on the scale of a hard-label loss whatever ``T`` is, so the weights
of the two terms need not change with it. Segmentation takes it per pixel (the softmax over
classes at every pixel, as in Liu et al., *Structured Knowledge Distillation for Semantic
Segmentation*, CVPR 2019) and averages over the valid pixels; the cached teacher logits, kept
at a reduced resolution, are resized bilinearly to the student's output first. Multi-label
tasks (CVS, tools) take the binary KL of each independent sigmoid, averaged over the labels.

The full loss is ``kd_weight * KL + gt_weight * GT``, GT the fine-tuning loss of the task
(segmentation: cross-entropy, class-weighted as fine-tuning, + soft Dice with 255 = ignore;
CVS, tools: binary cross-entropy)
over the items of the batch that carry labels; a batch without any has the KL term alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            valid: torch.Tensor | None = None, multilabel: bool = False) -> torch.Tensor:
    """``T^2 * KL(teacher || student)`` averaged over pixels (``(N, C, H, W)``) or items (``(N, C)``).

    Segmentation: ``teacher`` may be smaller than ``student`` (the cache's resolution); it is
    resized bilinearly to the student's size. ``valid`` (``(N, H, W)`` bool) leaves pixels out of
    the mean; with none valid the loss is 0 (still attached to the graph). ``multilabel``: each
    channel is one sigmoid; the binary KL is averaged over items and labels.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    s = student.float() / temperature
    t = teacher.float().to(s.device)
    if multilabel:
        t = t / temperature
        p = torch.sigmoid(t)
        # KL(Bernoulli(p) || Bernoulli(q)) from log-sigmoids: stable for large logits
        kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
        return kl.mean() * temperature ** 2
    if t.shape[-2:] != s.shape[-2:]:
        t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
    t = t / temperature
    log_p = F.log_softmax(t, dim=1)
    kl = (log_p.exp() * (log_p - F.log_softmax(s, dim=1))).sum(1)  # (N, H, W)
    if valid is None:
        return kl.mean() * temperature ** 2
    valid = valid.to(kl.device)
    count = valid.sum()
    if count == 0:
        return s.sum() * 0.0
    return (kl * valid).sum() / count * temperature ** 2
