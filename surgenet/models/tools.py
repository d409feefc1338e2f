"""Surgical tool presence (Cholec80 / CholecT50): which instruments are in view, one sigmoid each."""

from __future__ import annotations

from typing import Any, Sequence

from .. import label_sets
from .base import register_task
from .cvs import CVSModel

# The instrument lists of the two public label sets, in their official id order.
CHOLECT50_TOOLS = list(label_sets.CHOLECT50_TOOLS)
CHOLEC80_TOOLS = list(label_sets.CHOLEC80_TOOLS)


@register_task
class ToolsModel(CVSModel):
    """Pooled backbone embedding -> MLP -> one logit per tool (multi-label, like :class:`CVSModel`).

    Several tools are often in view at once, so each is scored independently (binary
    cross-entropy per tool) and evaluated with per-tool average precision (mAP).
    """

    task = "tools"

    def __init__(self, backbone: str, num_classes: int, class_names: Sequence[str] | None = None, *,
                 pretrained: bool = True, normalization: str = "default",
                 input_size: Sequence[int] | None = None, out_indices: Sequence[int] | None = None,
                 backbone_kwargs: dict[str, Any] | None = None,
                 hidden_dim: int = 512, dropout: float = 0.1) -> None:
        super().__init__(backbone, num_classes, class_names, pretrained=pretrained, normalization=normalization,
                         input_size=input_size, out_indices=out_indices, backbone_kwargs=backbone_kwargs,
                         hidden_dim=hidden_dim, dropout=dropout)

    @staticmethod
    def default_class_names(num_classes: int) -> list[str]:
        if num_classes == len(CHOLECT50_TOOLS):
            return list(CHOLECT50_TOOLS)
        if num_classes == len(CHOLEC80_TOOLS):
            return list(CHOLEC80_TOOLS)
        return [f"tool_{i}" for i in range(num_classes)]
