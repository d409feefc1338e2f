"""Surgical phase recognition: per-frame backbone embeddings and a causal temporal model."""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch

from ..exceptions import InputError
from .base import SurgeNetModel, register_task
from .temporal import TEMPORAL_MODELS, State


def _temporal_hparams(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """All hyperparameters of the temporal model, defaults filled in, so a saved config does not
    depend on the defaults of the surgenet version that reads it."""
    if kind not in TEMPORAL_MODELS:
        raise InputError(f"unknown temporal model {kind!r}; valid: {', '.join(TEMPORAL_MODELS)}.")
    params = inspect.signature(TEMPORAL_MODELS[kind]).parameters
    allowed = {n: p.default for n, p in params.items() if n not in ("in_channels", "num_classes")}
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(f"unknown {kind} options {unknown}; valid: {sorted(allowed)}.")
    return {**allowed, **kwargs}


@register_task
class PhaseModel(SurgeNetModel):
    """Backbone embedding per frame -> causal temporal model -> phase logits per frame.

    Shapes (frames are normalised float images):

    * ``forward(frames)``: one clip ``(T, 3, H, W)`` -> ``(T, P)``; a batch of clips
      ``(B, T, 3, H, W)`` -> ``(B, T, P)``. The prediction for frame t uses frames 0..t only.
    * ``forward_features(frames)``: ``(..., 3, H, W)`` -> ``(..., C)`` per-frame embeddings.
    * ``temporal(features)`` / ``forward_temporal``: ``(B, T, C)`` -> ``(B, T, P)``, for training
      on cached features; ``temporal.forward_stages`` gives every TCN stage for the loss.
    * online: ``state = model.init_state()``, then ``logits, state = model.step(frame, state)``
      with ``frame`` of shape ``(B, 3, H, W)``; equal to ``forward`` frame by frame.

    ``temporal="tcn"`` (default, TeCNO) or ``"lstm"``; further keywords go to that model
    (e.g. ``num_stages``, ``num_layers``, ``channels``, ``dropout``; ``hidden_size`` for the LSTM).
    Not ``exportable`` as one graph: it carries a state across frames; the export tools export
    ``model.backbone`` and run the temporal step beside it.
    """

    task = "phase"
    streaming = True
    exportable = False

    def __init__(self, backbone: str, num_classes: int, class_names: Sequence[str] | None = None, *,
                 pretrained: bool = True, normalization: str = "default",
                 input_size: Sequence[int] | None = None, out_indices: Sequence[int] | None = None,
                 backbone_kwargs: dict[str, Any] | None = None,
                 temporal: str = "tcn", **temporal_kwargs: Any) -> None:
        hparams = _temporal_hparams(temporal, temporal_kwargs)
        super().__init__(backbone, num_classes, class_names, normalization, input_size,
                         {"temporal": temporal, **hparams}, pretrained, out_indices, backbone_kwargs)
        self.temporal = TEMPORAL_MODELS[temporal](self.backbone.embed_dim, self.num_classes, **hparams)

    @staticmethod
    def default_class_names(num_classes: int) -> list[str]:
        return [f"phase_{i}" for i in range(num_classes)]

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim < 4 or frames.shape[-3] != 3:
            raise InputError(f"expected frames (..., 3, H, W), got shape {tuple(frames.shape)}.")
        lead = frames.shape[:-3]
        emb = self.embed(frames.reshape(-1, *frames.shape[-3:]))
        return emb.reshape(*lead, emb.shape[-1])

    def forward_temporal(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:
            return self.temporal(features.unsqueeze(0))[0]
        if features.ndim != 3:
            raise InputError(f"expected features (B, T, C) or (T, C), got shape {tuple(features.shape)}.")
        return self.temporal(features)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim not in (4, 5):
            raise InputError(f"expected a clip (T, 3, H, W) or clips (B, T, 3, H, W), got shape "
                             f"{tuple(frames.shape)}.")
        return self.forward_temporal(self.forward_features(frames))

    def init_state(self, batch_size: int = 1, device: torch.device | str | None = None) -> State:
        """A fresh state for ``batch_size`` independent streams (start of a video)."""
        ref = next(self.temporal.parameters())
        return self.temporal.init_state(batch_size, device=device or ref.device, dtype=ref.dtype)

    def step(self, frame: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One frame per stream ``(B, 3, H, W)`` -> logits ``(B, P)`` and the next state."""
        if frame.ndim != 4:
            raise InputError(f"step takes one frame per stream (B, 3, H, W), got shape {tuple(frame.shape)}.")
        return self.step_features(self.embed(frame), state)

    def step_features(self, features: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """:meth:`step` from precomputed embeddings ``(B, C)``."""
        return self.temporal.step(features, state)
