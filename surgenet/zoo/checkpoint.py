"""Reading weights safely and normalising every released layout to one flat backbone state dict.

Never unpickles arbitrary code: ``.pth`` files go through ``torch.load(weights_only=True)`` with
an allow-list of exactly what the released DINO checkpoints hold (``argparse.Namespace`` for
``args``); ``.safetensors`` through safetensors.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import torch

from ..exceptions import CheckpointError, KeyMismatchError
from ..io.text import read_user_text

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

# Everything a released SurgeNet/DINO checkpoint needs beyond tensors and containers.
SAFE_GLOBALS: list[Any] = [argparse.Namespace]

# Keys of the DINO projection heads (v1 ``head``, v2 ``dino_head``/``ibot_head``) that sit next to
# the backbone in DINO checkpoints; they are not part of the backbone.
DINO_HEAD_PREFIXES = ("head.mlp.", "head.last_layer.", "dino_head.", "ibot_head.")
# ``student`` last: surgenet-train checkpoints of methods without a teacher (SimCLR).
WRAPPER_KEYS = ("teacher", "state_dict", "model", "module", "student")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth")
# Messages of torch's weights_only unpickler when a file asks for code it will not run.
# ("Unsupported operand N" is the other kind: bytes that are no pickle at all, a damaged file.)
UNSAFE_PICKLE_MARKERS = ("unsupported global", "is blocked", "unrecognized function", "unsupported class")


def read_file(path: str | Path) -> Mapping[str, Any]:
    """Load a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file without running pickled code."""
    path = Path(path)
    if path.is_dir():
        path = weights_file_in(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist. Pass an existing file or folder as weights=.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses a file for what it would run; anything else is damage
        if any(marker in str(exc).lower() for marker in UNSAFE_PICKLE_MARKERS):
            raise CheckpointError(
                f"{path} holds Python objects that surgenet refuses to unpickle (it could run code). "
                "If you trust the file, re-save its tensors: torch.save(sd, out) or safetensors.torch.save_file."
            ) from exc
        raise CheckpointError(_corrupt(path)) from exc
    except Exception as exc:  # noqa: BLE001 - only the parse of a foreign file is guarded here:
        # garbage bytes surface as any of EOFError, IndexError, KeyError, zipfile errors, ...
        raise CheckpointError(_corrupt(path) + f" ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _corrupt(path: Path) -> str:
    return (
        f"{path} is truncated or corrupt and cannot be read. Delete it and download it again "
        "(surgenet download NAME --force), or pass a good copy with weights=."
    )


def weights_file_in(folder: Path) -> Path:
    """The weights file inside a folder written by ``save_pretrained`` or a training export."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.pth"))
    if len(candidates) == 1:
        return candidates[0]
    raise CheckpointError(
        f"folder {folder} holds no single weights file (looked for {', '.join(WEIGHT_FILES)}). "
        "Point weights= at the file itself."
    )


def read_folder_config(folder: Path) -> dict[str, Any] | None:
    """``config.json`` of a saved folder, if present."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(read_user_text(cfg))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg} is not valid JSON: {exc}. Re-save the model with save_pretrained.") from exc


def unwrap(obj: Mapping[str, Any], source: str) -> StateDict:
    """Descend into ``teacher``/``state_dict``/``model``/``module`` until a flat tensor dict remains.

    The teacher is taken from full DINO checkpoints (it is what the released files hold).
    """
    while isinstance(obj, Mapping):
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = obj[inner]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} holds no state dict (found {type(obj).__name__}).")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source} holds no tensors; top-level keys: {sorted(obj)[:10]}.")
    return tensors


def _strip_common(state_dict: StateDict, prefix: str) -> StateDict:
    if all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def backbone_state_dict(obj: Mapping[str, Any], source: str) -> tuple[StateDict, list[str]]:
    """A flat backbone state dict from any released form, and the keys dropped on purpose.

    Handles the flat teacher file (DINO head under ``head.``), full DINO checkpoints
    (``student``/``teacher``, ``module.``/``backbone.`` prefixes), task models saved by
    surgenet (backbone under ``backbone.model.``), PyTorch Lightning checkpoints of SimCLR/BYOL
    runs (the online backbone) and plain timm state dicts.
    """
    from .converters.lightning import backbone_from_lightning, is_lightning

    if is_lightning(obj):
        return backbone_from_lightning(obj, source)
    sd = unwrap(obj, source)
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    dropped: list[str] = []
    if any(k.startswith("backbone.") for k in sd):
        # A wrapper (DINO MultiCropWrapper or a surgenet task model): keep the backbone and drop
        # the heads next to it; anything else stays and is reported as unexpected.
        dropped = [k for k in sd if not k.startswith("backbone.") and k.split(".")[0] in
                   ("head", "dino_head", "ibot_head", "decoder", "temporal", "FPN")]
        sd = {k[len("backbone."):] if k.startswith("backbone.") else k: v
              for k, v in sd.items() if k not in set(dropped)}
    dino_head = [k for k in sd if k.startswith(DINO_HEAD_PREFIXES)]
    sd = {k: v for k, v in sd.items() if k not in set(dino_head)}
    sd = _strip_common(sd, "model.")
    if dropped or dino_head:
        logger.debug("%s: dropped %d head keys", source, len(dropped) + len(dino_head))
    return sd, dropped + dino_head


def load_strict(module: torch.nn.Module, state_dict: StateDict, source: str) -> None:
    """Load every tensor, reshaping only where the shapes differ by size-1 dimensions alone
    (a Linear weight vs a 1x1 conv kernel, a (1, D) vs (1, 1, D) token); anything missing,
    unexpected or of another shape (a transposed matrix included) raises :class:`KeyMismatchError`.

    The one relaxation is named by the network itself: a submodule's ``optional_state()`` lists
    state that files may leave out and the value it then takes (DINOv3 RoPE periods, which only
    some files hold). After loading, a submodule's ``check_loaded_state(source)`` may refuse what
    it was given (periods that the authors' code cannot have computed)."""
    target = module.state_dict()
    optional = _optional_state(module)
    defaulted = {k: v for k, v in optional.items() if k in target and k not in state_dict}
    if defaulted:
        logger.info("%s holds no %s: using the values the architecture computes", source, ", ".join(sorted(defaulted)))
    state_dict = {**state_dict, **defaulted}
    missing = set(target) - set(state_dict)
    unexpected = set(state_dict) - set(target)
    fixed: StateDict = {}
    bad_shape = []
    for key in set(target) & set(state_dict):
        value, want = state_dict[key], target[key].shape
        if value.shape != want:
            if _squeezed(value.shape) != _squeezed(want):
                bad_shape.append(f"{key}: file {tuple(value.shape)} vs network {tuple(want)}")
                continue
            value = value.reshape(want)
        fixed[key] = value
    if missing or unexpected or bad_shape:
        raise KeyMismatchError(source, missing, unexpected, bad_shape)
    module.load_state_dict(fixed, strict=True)
    for submodule in module.modules():
        check = getattr(submodule, "check_loaded_state", None)
        if callable(check):
            check(source)


def _optional_state(module: torch.nn.Module) -> StateDict:
    """``prefix.name -> default`` for the state that submodules allow a file to leave out."""
    out: StateDict = {}
    for prefix, submodule in module.named_modules():
        optional = getattr(submodule, "optional_state", None)
        if callable(optional):
            out.update({f"{prefix}.{k}" if prefix else k: v for k, v in optional().items()})
    return out


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if d != 1)
