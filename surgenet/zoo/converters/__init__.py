"""Key-layout converters: one module per foreign checkpoint layout, each idempotent.

A converter maps a flat backbone state dict (already unwrapped and stripped of prefixes and
DINO heads by :mod:`surgenet.zoo.checkpoint`) onto timm's key layout, and names the keys it drops
on purpose. Running a converter on its own output returns the same dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from . import convnextv2, metaformer, pvtv2, vit, vit_msn

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Converter:
    """How one layout maps to timm: ``convert`` renames, ``unused`` lists keys dropped on purpose."""

    convert: Callable[[StateDict], StateDict]
    unused: tuple[str, ...]  # regexes of original-layout keys of heads the backbone does not have
    is_timm: Callable[[StateDict], bool] = lambda sd: False

    def __call__(self, state_dict: StateDict) -> tuple[StateDict, list[str]]:
        if self.is_timm(state_dict):  # already converted: timm's own `head.norm` must stay
            return dict(state_dict), []
        dropped = [k for k in state_dict if any(re.fullmatch(p, k) for p in self.unused)]
        kept = {k: v for k, v in state_dict.items() if k not in set(dropped)}
        return self.convert(kept), dropped


CONVERTERS: dict[str, Converter] = {
    "metaformer": Converter(metaformer.convert, metaformer.UNUSED, metaformer.is_timm),
    "convnextv2": Converter(convnextv2.convert, convnextv2.UNUSED, convnextv2.is_timm),
    "pvtv2": Converter(pvtv2.convert, pvtv2.UNUSED, pvtv2.is_timm),
    "dinov1": Converter(vit.convert_dinov1, vit.UNUSED),
    "dinov2": Converter(vit.convert_dinov2, vit.UNUSED),
    "dinov3": Converter(vit.convert_dinov3, vit.UNUSED),
    "vit_msn": Converter(vit_msn.convert, vit_msn.UNUSED, vit_msn.is_timm),
    "timm": Converter(lambda sd: dict(sd), ()),
}
