"""Label propagation by backbone feature affinity, the video object segmentation protocol of the
DINO papers (Caron et al., ICCV 2021, after Jabri et al.'s space-time correspondence).

Each frame's patch features are L2-normalised. A query (a patch of the current frame) looks at
the keys of a memory (the first frame, whose labels are given, and the last ``n_last`` frames with
their propagated labels) within a square window of ``radius`` patches around its own position,
keeps the ``topk`` most similar keys, and takes the mean of their labels weighted by
``exp(similarity / temperature)``. The mean similarity of the kept keys is the step's confidence.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import InputError
from ._deps import cv2 as _cv2
from .propagate import PropagationStep, Propagator

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FeaturePropagator(Propagator):
    """Feature label propagation with a surgenet backbone.

    Args:
        model: a surgenet task model (its backbone and normalisation are used) or a
            :class:`~surgenet.zoo.backbones.FeatureBackbone`.
        stage: which of the backbone's feature maps (index into its outputs); default the
            finest map at stride >= 8 (DINO used stride 8).
        max_side: frames are resized so their longer side is at most this before the backbone.
        n_last, topk, radius, temperature: the DINO evaluation's ``n_last_frames`` (7),
            ``topk`` (5), ``size_mask_neighborhood`` (12, in patches) and temperature (0.1).
        mean, std: normalisation when ``model`` is a bare backbone (default ImageNet's).
    """

    name = "features"

    def __init__(self, model: Any, stage: int | None = None, max_side: int = 448, n_last: int = 7,
                 topk: int = 5, radius: int = 12, temperature: float = 0.1,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 chunk: int = 512) -> None:
        super().__init__()
        backbone = getattr(model, "backbone", model)
        if not hasattr(backbone, "feature_info"):
            raise InputError(f"feature propagation needs a surgenet model or backbone, got {type(model).__name__}.")
        config = getattr(model, "config", {}) or {}
        self.model, self.backbone = model, backbone
        self.mean = torch.tensor(mean or config.get("mean") or IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(std or config.get("std") or IMAGENET_STD).view(1, 3, 1, 1)
        reductions = [int(r) for r in backbone.feature_info.reduction()]
        if stage is None:
            candidates = [i for i, r in enumerate(reductions) if r >= 8]
            stage = min(candidates, key=lambda i: reductions[i]) if candidates else len(reductions) - 1
        if not -len(reductions) <= stage < len(reductions):
            raise InputError(f"stage {stage} out of range: the backbone gives {len(reductions)} feature maps.")
        if min(n_last, topk, radius, max_side) < 1 or temperature <= 0:
            raise InputError("n_last, topk, radius and max_side must be >= 1 and temperature > 0.")
        self.stage, self.max_side, self.n_last, self.topk = stage, int(max_side), int(n_last), int(topk)
        self.radius, self.temperature, self.chunk = int(radius), float(temperature), int(chunk)
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        self._recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=self.n_last)
        self._grid: tuple[int, int] = (0, 0)
        self._window: torch.Tensor | None = None

    # ----------------------------------------------------------------------------- features
    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @torch.inference_mode()
    def features(self, frame: np.ndarray) -> torch.Tensor:
        """L2-normalised patch features ``(h * w, D)`` of an RGB frame; sets the grid size (h, w)."""
        h, w = frame.shape[:2]
        factor = min(1.0, self.max_side / max(h, w))
        x = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float().div_(255.0)
        if factor < 1:
            x = F.interpolate(x, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="bilinear",
                              align_corners=False, antialias=True)
        x = ((x - self.mean) / self.std).to(self.device)
        out_h, out_w = x.shape[-2:]
        if hasattr(self.model, "pad_input"):
            x = self.model.pad_input(x)
        else:  # a bare backbone: pad to its coarsest stride
            m = max(int(r) for r in self.backbone.feature_info.reduction())
            x = F.pad(x, (0, (-x.shape[-1]) % m, 0, (-x.shape[-2]) % m), mode="replicate")
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            feat = self.backbone(x)[self.stage].float()
        finally:
            self.backbone.train(was_training)
        r = int(self.backbone.feature_info.reduction()[self.stage])
        # drop the cells that cover only padding
        feat = feat[..., :max(1, -(-out_h // r)), :max(1, -(-out_w // r))]
        grid = (int(feat.shape[-2]), int(feat.shape[-1]))
        if grid != self._grid:
            self._grid, self._window = grid, None
        return F.normalize(feat[0].flatten(1).T, dim=1).cpu()

    def _to_grid(self, probs: np.ndarray) -> torch.Tensor:
        cv2 = _cv2()
        h, w = self._grid
        small = cv2.resize(probs, (w, h), interpolation=cv2.INTER_AREA)
        small = small.reshape(h * w, -1)
        return torch.from_numpy(small / np.maximum(small.sum(1, keepdims=True), 1e-6)).float()

    def _window_mask(self) -> torch.Tensor:
        """(hw, hw) bool: key j is within ``radius`` patches (Chebyshev) of query i."""
        if self._window is None:
            h, w = self._grid
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            ys, xs = ys.flatten(), xs.flatten()
            near_y = (ys[:, None] - ys[None]).abs() <= self.radius
            self._window = near_y & ((xs[:, None] - xs[None]).abs() <= self.radius)
        return self._window

    # ----------------------------------------------------------------------------- propagation
    def _propagate(self, query: torch.Tensor, memory: list[tuple[torch.Tensor, torch.Tensor]]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (hw, C) and confidence (hw,) of the query patches from a memory of (features, labels)."""
        keys = torch.stack([m[0] for m in memory])  # (n, hw, D)
        labels = torch.cat([m[1] for m in memory])  # (n * hw, C)
        window = self._window_mask()
        n, hw = keys.shape[:2]
        k = min(self.topk, n * hw)
        out = torch.empty(query.shape[0], labels.shape[1])
        conf = torch.empty(query.shape[0])
        for start in range(0, query.shape[0], self.chunk):
            q = query[start:start + self.chunk]
            sim = torch.einsum("qd,nkd->qnk", q, keys)
            sim = sim.masked_fill(~window[start:start + self.chunk, None, :], float("-inf")).reshape(len(q), -1)
            top, idx = sim.topk(k, dim=1)
            weight = torch.softmax(top / self.temperature, dim=1)  # exp(s / T) normalised over the kept keys
            weight = torch.nan_to_num(weight)
            out[start:start + len(q)] = torch.einsum("qk,qkc->qc", weight, labels[idx])
            conf[start:start + len(q)] = torch.nan_to_num(top, neginf=0.0).clamp(0, 1).mean(1)
        return out, conf

    def _to_full(self, values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        cv2 = _cv2()
        h, w = self._grid
        small = values.reshape(h, w, -1).numpy().astype(np.float32)
        full = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return full if full.ndim == 3 else full[..., None]

    def _reset(self) -> None:
        self._first, self._recent = None, deque(maxlen=self.n_last)

    def _remember(self, frame: np.ndarray, probs: np.ndarray) -> None:
        feats = self.features(frame)
        self._first = (feats, self._to_grid(probs))
        self._prev_feats = feats

    def _step(self, frame: np.ndarray) -> PropagationStep:
        size = frame.shape[:2]
        query = self.features(frame)
        if self._first is None or self._first[0].shape[0] != query.shape[0]:
            raise InputError("the frame gives a feature grid of another size than the first frame's.")
        labels, conf = self._propagate(query, [self._first, *self._recent])
        probs = self._to_full(labels, size)
        probs /= np.maximum(probs.sum(-1, keepdims=True), 1e-6)
        confidence = self._to_full(conf[:, None], size)[..., 0]
        prev_feats = self._prev_feats
        self._recent.append((query, labels))
        self._prev_feats = query

        def warp_labels(ids: np.ndarray) -> np.ndarray:
            values, inverse = np.unique(np.asarray(ids), return_inverse=True)
            onehot = np.eye(len(values), dtype=np.float32)[inverse.reshape(ids.shape)]
            carried, _ = self._propagate(query, [(prev_feats, self._to_grid(onehot))])
            return values[self._to_full(carried, size).argmax(-1)].astype(ids.dtype)

        return PropagationStep(probs=probs.astype(np.float32), confidence=confidence.astype(np.float32),
                               warp_labels=warp_labels)

    def _corrected(self, probs: np.ndarray) -> None:
        if self._recent:
            feats, _ = self._recent[-1]
            self._recent[-1] = (feats, self._to_grid(probs))
