"""``load_backbone``: one call from a zoo name (or a local file) to a strictly loaded network."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from .backbones import FeatureBackbone, create_network
from .checkpoint import backbone_state_dict, load_strict, read_file, read_folder_config
from .converters import CONVERTERS
from ..exceptions import CheckpointError, InputError
from .hub import download_weights, warn_license
from .registry import ModelEntry, get_entry, is_released

logger = logging.getLogger(__name__)


def load_backbone(
    name: str,
    pretrained: bool = True,
    weights: str | Path | None = None,
    out_indices: Sequence[int] | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    vit_pyramid: bool = False,
    **network_kwargs,
) -> FeatureBackbone:
    """Build the backbone ``name`` and load its weights strictly.

    Args:
        name: a zoo name (``surgenet.list_models()``) or a timm architecture name (``resnet50``);
            it fixes the architecture. Or a folder written by ``surgenet-train`` (``RUN/teacher``)
            or ``save_pretrained``, whose ``config.json`` names its own architecture.
        pretrained: load the released weights from the Hugging Face Hub (cached); ``False`` gives
            random weights.
        weights: a local file or folder to load instead of the released file: a teacher ``.pth``,
            a full DINO checkpoint, a ``.safetensors``, or a folder written by ``save_pretrained``
            or by ``surgenet-train`` (the network arguments a run recorded rebuild it as trained).
        out_indices: stages (CNNs, default all four) or blocks (ViTs, default four evenly spaced).
        revision: passed to huggingface_hub (pin a commit of the weights' repository).
        cache_dir: passed to huggingface_hub (another cache than the default one).
        vit_pyramid: for ViTs, resample the four maps to strides 4/8/16/32.
        **network_kwargs: extra timm arguments (e.g. ``drop_path_rate``).

    Returns:
        A :class:`FeatureBackbone`: ``bb(x)`` is a list of NCHW maps; ``bb.feature_info``.

    Examples:
        >>> bb = surgenet.load_backbone("surgenetxl-caformer")
        >>> [f.shape[1] for f in bb(torch.randn(1, 3, 256, 256))]
        [64, 128, 320, 512]
    """
    folder = Path(str(name)).expanduser()
    if weights is None and folder.is_dir():
        name, weights, network_kwargs = _self_describing_folder(folder, network_kwargs)
    entry = get_entry(name)
    state_dict, source = None, None
    if weights is not None:
        source = str(weights)
        obj = read_weights(weights, entry)
        # The run's record rebuilds the network as trained; the caller may still override an argument.
        network_kwargs = {**recorded_network_kwargs(weights, obj), **network_kwargs}
        state_dict = normalised_state_dict(entry, obj, source)
    elif pretrained:
        if not is_released(entry):
            raise InputError(f"{name} is a timm architecture without released weights: pass pretrained=False for "
                             "random weights, or weights=PATH (a file or a surgenet-train RUN/teacher folder).")
        path = download_weights(entry, revision=revision, cache_dir=cache_dir)
        source = str(path)
        state_dict = normalised_state_dict(entry, read_file(path), source)
    layout = {**(layout_network_kwargs(entry, state_dict) if state_dict else {}),
              **{k: v for k, v in network_kwargs.items() if k in LAYOUT_KWARGS}}
    network = create_network(entry.arch, **{**network_kwargs, **layout})
    if state_dict is not None:
        load_strict(network, state_dict, source)
        if weights is None:
            warn_license(entry)
    backbone = FeatureBackbone(network, entry.arch, out_indices=out_indices, vit_pyramid=vit_pyramid)
    # What a saved task model records to rebuild this network: the arguments it was built with
    # (a training run's network_kwargs included) and those read off the weights.
    backbone.layout_kwargs = {**network_kwargs, **layout}
    return backbone


def _self_describing_folder(folder: Path, network_kwargs: dict) -> tuple[str, Path, dict]:
    """The model name and weights of a folder whose ``config.json`` names them (RUN/teacher)."""
    config = read_folder_config(folder)
    if not config or not (config.get("name") or config.get("backbone")):
        raise InputError(f"{folder} has no config.json naming its architecture; pass the model name and the "
                         f"folder as weights: load_backbone(NAME, weights={str(folder)!r}).")
    return str(config.get("name") or config["backbone"]), folder, network_kwargs


def recorded_network_kwargs(weights: str | Path, obj: Mapping[str, Any] | None = None) -> dict:
    """Network arguments a ``surgenet-train`` run recorded with its weights (e.g. a smaller depth,
    another patch size), so the network rebuilds as trained rather than with the defaults.

    Read from ``RUN/teacher/config.json`` (the folder, or its ``model.safetensors`` named alone)
    or from the run config inside a training checkpoint (``RUN/checkpoint.pth``, already read as
    ``obj``); anything else records none.
    """
    path = Path(weights).expanduser()
    export = read_folder_config(path.parent) if path.name == "model.safetensors" else None
    if path.is_dir():
        kwargs = (read_folder_config(path) or {}).get("network_kwargs")
    elif export is not None and export.get("source") == "surgenet-train":
        kwargs = export.get("network_kwargs")
    else:
        config = obj.get("config") if isinstance(obj, Mapping) else None
        model = config.get("model") if isinstance(config, Mapping) else None
        kwargs = model.get("network_kwargs") if isinstance(model, Mapping) else None
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{path} records network_kwargs={kwargs!r}, not a mapping of network arguments; "
                              "re-export the teacher with surgenet-train export-teacher.")
    return dict(kwargs)


def read_weights(weights: str | Path, entry: ModelEntry):
    """Read a user-named file or folder; a folder's ``config.json`` must name the same architecture."""
    path = Path(weights).expanduser()
    if path.is_dir():
        config = read_folder_config(path) or {}
        arch = config.get("arch") or config.get("backbone_arch")
        if arch is not None and arch != entry.arch:
            raise CheckpointError(
                f"{path} holds a {arch} network but {entry.name} is a {entry.arch}. Pass a model name "
                f"with that architecture (surgenet.list_models())."
            )
    return read_file(path)


def normalised_state_dict(entry: ModelEntry, obj, source: str) -> dict:
    """Any released form of ``entry``'s weights as a flat state dict in timm's layout."""
    state_dict, dropped = backbone_state_dict(obj, source)
    state_dict, unused = CONVERTERS[entry.layout](state_dict)
    if dropped or unused:
        logger.info("%s: ignored %d head keys that are not part of the backbone: %s", source,
                    len(dropped) + len(unused), ", ".join(sorted(dropped + unused)[:8]))
    return state_dict


# Network arguments that follow from the weights rather than from the zoo name.
LAYOUT_KWARGS = ("reg_tokens", "no_embed_class", "num_reg_tokens")


def layout_network_kwargs(entry: ModelEntry, state_dict: dict) -> dict:
    """Network arguments read off the weights: the number of DINOv2 register tokens or DINOv3
    storage tokens.

    The SurgeNetXL DINOv2 runs started from the 4-register checkpoints, but the official loader
    builds a register-free ViT and silently drops them; the SurgeNetXL DINOv3 runs used none.
    We build what the file holds.
    """
    if entry.layout not in ("dinov2", "dinov3"):
        return {}
    registers = int(state_dict["reg_token"].shape[1]) if "reg_token" in state_dict else 0
    logger.info("%s: %d register tokens found in the weights", entry.name, registers)
    if entry.layout == "dinov3":
        return {"num_reg_tokens": registers}
    # timm keeps the class token's position inside the class token only in the register layout
    return {"reg_tokens": registers, "no_embed_class": registers > 0}
