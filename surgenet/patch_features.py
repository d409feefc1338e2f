"""Patch features of one frame from any backbone surgenet can load: a zoo name, a folder written by
``save_pretrained`` or ``surgenet-train`` (a run, its ``teacher/`` or its ``best/``), or a task model.

The frame is resized keeping its aspect ratio, each side a multiple of the backbone's stride, so
the feature grid covers the whole frame without padding or distortion; the result is one
``(C, h, w)`` map: a CNN stage (default the one at stride 16, stage 2 of the zoo CNNs) or a ViT
block's patch tokens after the final norm (default the last block; class and register tokens
excluded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .zoo.backbones import ARCHITECTURES, FeatureBackbone
from .zoo.checkpoint import read_folder_config
from .exceptions import InputError
from .io import as_rgb_array
from .zoo.registry import get_entry

logger = logging.getLogger(__name__)

DEFAULT_SHORT_SIDE = 448  # input pixels on the frame's short side: enough patches to see anatomy
CNN_DEFAULT_STRIDE = 16  # stage 2 of the zoo CNNs: fine enough to outline structures, deep enough to be semantic
CNN_STAGES = 4


@dataclass
class FeatureExtractor:
    """A backbone restricted to one layer, with the normalisation of its weights.

    Build it with :func:`load_feature_extractor`; ``extractor(image)`` gives ``(C, h, w)``.
    """

    backbone: FeatureBackbone
    name: str  # the zoo name of the architecture's entry
    mean: Sequence[float]
    std: Sequence[float]
    source: str  # where the weights came from: "released", "random" or a path
    layer: int

    @property
    def stride(self) -> int:
        return int(self.backbone.reductions[0])

    @property
    def size_multiple(self) -> int:
        """Input sides that the whole backbone divides evenly (ViT: the patch; CNN: the last stage)."""
        if self.backbone.is_vit:
            return self.stride
        return int(self.backbone.model.feature_info[-1]["reduction"])

    @property
    def layer_description(self) -> str:
        kind = "block" if self.backbone.is_vit else "stage"
        return f"{kind} {self.layer}, stride {self.stride}"

    def input_size(self, height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE) -> tuple[int, int]:
        """The network input for a ``height`` x ``width`` frame: aspect ratio kept, ``short_side``
        pixels on the short side, both sides rounded to a multiple of :attr:`size_multiple`."""
        if short_side < 1:
            raise InputError(f"the input size must be a positive number of pixels, got {short_side}.")
        m = self.size_multiple
        scale = short_side / min(height, width)
        return (max(m, round(height * scale / m) * m), max(m, round(width * scale / m) * m))

    @torch.inference_mode()
    def __call__(self, image: Any, short_side: int = DEFAULT_SHORT_SIDE) -> torch.Tensor:
        """The ``(C, h, w)`` feature map of ``image`` (path, PIL image or uint8 RGB array)."""
        frame = as_rgb_array(image)
        size = self.input_size(frame.shape[0], frame.shape[1], short_side)
        x = torch.from_numpy(np.array(frame, dtype=np.uint8, order="C")).permute(2, 0, 1)[None].float().div_(255.0)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        param = next(self.backbone.parameters())
        x = ((x - mean) / std).to(device=param.device, dtype=param.dtype)
        was_training = self.backbone.training  # the network may be a user's model: leave its mode as it was
        self.backbone.eval()
        try:
            return self.backbone(x)[0][0].float().cpu()
        finally:
            self.backbone.train(was_training)


def load_feature_extractor(model: Any, layer: int | None = None, pretrained: bool = True,
                           weights: str | Path | None = None) -> FeatureExtractor:
    """A :class:`FeatureExtractor` for ``model``.

    Args:
        model: a zoo name (``surgenet.list_models()``), a folder written by ``save_pretrained``
            (``surgenet-train finetune``'s ``RUN/best``), a ``surgenet-train pretrain`` run folder
            or its ``RUN/teacher``, or a task model object.
        layer: CNNs: the stage, 0..3 (default 2, stride 16); ViTs: the block (default the last).
        pretrained: with a zoo name, load the released weights (``False``: random).
        weights: with a zoo name, a local weights file or folder instead of the released file.
    """
    from .models.base import SurgeNetModel

    if isinstance(model, SurgeNetModel):
        if weights is not None:
            raise InputError("weights= goes with a zoo name, not with a model object (it has its weights).")
        return _from_network(model.backbone.model, model.config, layer, "the given model")
    if not isinstance(model, (str, Path)):
        raise InputError(f"model must be a zoo name, a saved folder or a surgenet task model, not "
                         f"{type(model).__name__}.")
    path = Path(model).expanduser()
    if path.is_dir():
        if weights is not None:
            raise InputError(f"{path} is a saved folder with its own weights; pass weights= only with a zoo name.")
        return _from_folder(path, layer)
    entry = get_entry(str(model))  # an unknown name fails here, before anything is loaded
    layer = _checked_layer(entry.arch, layer)
    from .zoo.factory import load_backbone

    network = load_backbone(entry.name, pretrained=pretrained, weights=weights, out_indices=(-1,)).model
    backbone = _wrap(network, entry.arch, layer)
    source = str(weights) if weights is not None else "released" if pretrained else "random"
    return FeatureExtractor(backbone, entry.name, entry.mean, entry.std, source, backbone.out_indices[0])


def _from_folder(path: Path, layer: int | None) -> FeatureExtractor:
    if not (path / "config.json").is_file() and (path / "teacher" / "config.json").is_file():
        path = path / "teacher"  # a surgenet-train pretrain run: its exported teacher
    config = read_folder_config(path)
    if config is None:
        raise InputError(f"{path} has no config.json: it is neither a folder written by save_pretrained nor a "
                         "surgenet-train run. Pass a zoo name with weights=FILE for a bare weights file.")
    if "task" in config:
        from .models import load_model

        return _from_network(load_model(path).backbone.model, config, layer, str(path))
    if "name" not in config or "arch" not in config:
        raise InputError(f"{path / 'config.json'} names no model (expected the keys 'task', or 'name' and "
                         "'arch' of a surgenet-train teacher export).")
    entry = get_entry(config["name"])
    from .zoo.factory import load_backbone

    layer = _checked_layer(entry.arch, layer)
    network = load_backbone(entry.name, weights=path, out_indices=(-1,)).model  # it reads the run's network_kwargs
    backbone = _wrap(network, entry.arch, layer)
    return FeatureExtractor(backbone, entry.name, config.get("mean", entry.mean), config.get("std", entry.std),
                            str(path), backbone.out_indices[0])


def _from_network(network: torch.nn.Module, config: dict[str, Any], layer: int | None,
                  source: str) -> FeatureExtractor:
    entry = get_entry(config["backbone"])
    backbone = _wrap(network, entry.arch, _checked_layer(entry.arch, layer))
    return FeatureExtractor(backbone, entry.name, config["mean"], config["std"], source, backbone.out_indices[0])


def _wrap(network: torch.nn.Module, arch: str, layer: int | None) -> FeatureBackbone:
    """The network restricted to ``layer`` (``None``: the default of its kind, see the module doc)."""
    if layer is None:
        layer = _default_layer(FeatureBackbone(network, arch, out_indices=(-1,)))
    try:
        return FeatureBackbone(network, arch, out_indices=(layer,))
    except ValueError as exc:  # a layer past the end of a non-standard (e.g. tiny) network
        raise InputError(str(exc).replace("out_indices", "layer")) from None


def _default_layer(backbone: FeatureBackbone) -> int:
    """ViTs: the last block; CNNs: the stage at stride 16 (else the middle one)."""
    if backbone.is_vit:
        return -1
    reductions = [int(f["reduction"]) for f in backbone.model.feature_info]
    return reductions.index(CNN_DEFAULT_STRIDE) if CNN_DEFAULT_STRIDE in reductions else len(reductions) // 2


def _checked_layer(arch: str, layer: int | None) -> int | None:
    """``layer`` checked, before anything loads, against the depth of a zoo architecture (other
    networks are checked once built)."""
    spec = ARCHITECTURES.get(arch)
    if layer is None or spec is None or not spec.default_out_indices:
        return layer
    if spec.structure == "vit":
        depth = spec.default_out_indices[-1] + 1
        what = f"ViT block (0..{depth - 1}, or -1 for the last)"
    else:
        depth = CNN_STAGES
        what = f"stage of {arch} (0..3: strides 4, 8, 16, 32)"
    if not -depth <= layer < depth:
        raise InputError(f"layer {layer} is not a {what}.")
    return layer


__all__ = ["FeatureExtractor", "load_feature_extractor", "DEFAULT_SHORT_SIDE"]
