"""From a model's logits to what a user reads: one post-processing for every way a model runs.

The Predictor (images, videos, the real-time pipeline, the web demo) and the batch engines
(``surgenet batch``) call these functions, so a frame gives the same labels, shares and
probabilities whichever path it took. One rule worth writing down once: a segmentation model
with a single logit is binary, foreground where the logit is above 0 (sigmoid > 0.5), and it
labels two classes, background and its one named class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .argmax import upsampled_argmax
from .tasks import MULTI_LABEL_TASKS


def label_count(num_logits: int) -> int:
    """Classes a segmentation model's labels take: its logits, or 2 for a one-logit (binary) model."""
    return 2 if int(num_logits) == 1 else int(num_logits)


def label_names(class_names: Sequence[str], num_logits: int) -> list[str]:
    """The names of the labels: a binary model's one named class gets ``background`` before it."""
    names = list(class_names)
    return ["background", *names] if int(num_logits) == 1 and len(names) == 1 else names


def segmentation_labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Labels ``(H, W)`` at ``size`` from logits ``(C, h, w)``: resize-then-argmax (one logit:
    foreground where it is > 0), uint8 up to 256 labels, int32 beyond."""
    with torch.inference_mode():
        labels = upsampled_argmax(logits, size).cpu().numpy()
    return labels.astype(np.uint8 if label_count(logits.shape[0]) <= 256 else np.int32, copy=False)


def segmentation_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Per-label probabilities ``(H, W, L)`` float32 at ``size`` from logits ``(C, h, w)``: bilinear
    resize, then a softmax over the classes (one logit: background and foreground by sigmoid)."""
    with torch.inference_mode():
        full = torch.nn.functional.interpolate(logits[None].float(), size=tuple(size), mode="bilinear",
                                               align_corners=False)[0]
        if full.shape[0] == 1:
            foreground = torch.sigmoid(full[0])
            probs = torch.stack([1.0 - foreground, foreground])
        else:
            probs = torch.softmax(full, dim=0)
    return np.ascontiguousarray(probs.permute(1, 2, 0).cpu().numpy(), dtype=np.float32)


def class_shares(labels: np.ndarray, num_logits: int) -> np.ndarray:
    """The share of the frame's pixels in each label (sums to 1), float32 ``(label_count,)``."""
    count = label_count(num_logits)
    return (np.bincount(labels.ravel(), minlength=count)[:count] / labels.size).astype(np.float32)


def label_probabilities(logits: torch.Tensor, task: str) -> np.ndarray:
    """Per-label probabilities of a frame classifier: independent sigmoids for the multi-label
    tasks (CVS criteria, tools), one softmax over the classes otherwise (phase)."""
    scores = logits.float()
    probs = torch.sigmoid(scores) if task in MULTI_LABEL_TASKS else torch.softmax(scores, dim=-1)
    return probs.cpu().numpy()


__all__ = ["class_shares", "label_count", "label_names", "label_probabilities", "segmentation_labels",
           "segmentation_probabilities"]
