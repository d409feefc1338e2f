"""Segmentation checkpoints trained with the authors' own code, mapped onto ``SegmentationModel``.

Their ``MetaFormerFPN``, ``ConvNextFPN`` and ``PVTV2FPN`` hold the backbone under
``metaformer.``, ``convnext.`` or ``pvtv2.`` (in the original key layouts, with an unused
classification head) and the decoder under ``FPN.``, whose module names ours keep.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..zoo.checkpoint import unwrap
from ..zoo.converters import CONVERTERS
from ..exceptions import CheckpointError, KeyMismatchError
from ..zoo.registry import ModelEntry

StateDict = dict[str, torch.Tensor]

# Backbone prefix in the authors' segmentation networks -> key layout of the released backbone.
AUTHORS_PREFIXES = {"metaformer.": "metaformer", "convnext.": "convnextv2", "pvtv2.": "pvtv2"}
AUTHORS_CLASSES = {"metaformer": "MetaFormerFPN", "convnextv2": "ConvNextFPN", "pvtv2": "PVTV2FPN"}
DECODER_PREFIX = "FPN."

# Parameters of StarReLU, the activation of the authors' default (non-SurgeNet) CAFormer.
_STAR_RELU = (".act1.scale", ".act1.bias", ".mlp.act.scale", ".mlp.act.bias")


def flat_state_dict(obj: Mapping, source: str) -> StateDict:
    """Unwrap ``state_dict``/``model`` containers and strip a DistributedDataParallel ``module.``."""
    sd = unwrap(obj, source)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def authors_layout(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The backbone layout of an authors' FPN checkpoint, or ``None`` if it is not one."""
    if not any(k.startswith(DECODER_PREFIX) for k in state_dict):
        return None
    for prefix, layout in AUTHORS_PREFIXES.items():
        if any(k.startswith(prefix) for k in state_dict):
            return layout
    return None


def convert_authors_fpn(state_dict: Mapping[str, torch.Tensor], entry: ModelEntry,
                        source: str) -> tuple[StateDict, list[str]]:
    """Keys of ``SegmentationModel`` (``backbone.model.*``, ``decoder.*``) and the head keys dropped."""
    layout = authors_layout(state_dict)
    if layout is None:
        raise CheckpointError(f"{source} is not an authors' FPN checkpoint (no {DECODER_PREFIX} keys next to "
                              f"{', '.join(AUTHORS_PREFIXES)} keys).")
    if layout != entry.layout:
        raise CheckpointError(
            f"{source} is a {AUTHORS_CLASSES[layout]} checkpoint, but {entry.name} has a {entry.layout} backbone. "
            f"Pass a model of that family: surgenet.list_models(family="
            f"{'caformer' if layout == 'metaformer' else layout!r}).")
    prefix = next(p for p, lay in AUTHORS_PREFIXES.items() if lay == layout)
    backbone = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    decoder = {k[len(DECODER_PREFIX):]: v for k, v in state_dict.items() if k.startswith(DECODER_PREFIX)}
    other = sorted(k for k in state_dict if not k.startswith((prefix, DECODER_PREFIX)))
    if other:
        raise KeyMismatchError(source, [], other)
    backbone, dropped = CONVERTERS[layout](backbone)
    out = {f"backbone.model.{k}": v for k, v in backbone.items()}
    out.update({f"decoder.{k}": v for k, v in decoder.items()})
    return out, [prefix + k for k in dropped]


def explain_mismatch(error: KeyMismatchError, source: str) -> KeyMismatchError:
    """A clearer error for the one mismatch users will meet: a StarReLU CAFormer checkpoint."""
    if any(k.endswith(_STAR_RELU) for k in error.unexpected):
        source = (f"{source} (a CAFormer with StarReLU activations, the default of the authors' "
                  f"MetaFormerFPN; the SurgeNet CAFormer uses ReLU, so these weights belong to another "
                  f"network and cannot be loaded into a SurgeNet model)")
    return KeyMismatchError(source, error.missing, error.unexpected, error.shape_mismatch)
