"""``SurgeNetModel``: what every task model shares: a zoo backbone, a JSON config and the
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` trio (huggingface_hub mixin style).

A saved folder holds ``config.json`` (the constructor arguments), ``model.safetensors`` (every
tensor, the backbone included) and ``README.md`` (a model card). Restoring it builds the network
from the config with a random backbone and loads the tensors strictly: nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._version import __version__
from ..zoo.backbones import FeatureBackbone
from ..zoo.checkpoint import load_strict, read_file
from ..exceptions import CheckpointError, InputError
from ..zoo.factory import load_backbone
from ..io.atomic import atomic_target, atomic_write_text
from ..io.text import read_user_text
from ..zoo.registry import ModelEntry, get_entry, input_size_for

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

# Task name -> model class; filled by the task modules through ``register_task``.
TASK_CLASSES: dict[str, type[SurgeNetModel]] = {}


def register_task(cls: type[SurgeNetModel]) -> type[SurgeNetModel]:
    TASK_CLASSES[cls.task] = cls
    return cls


def resolve_normalization(entry: ModelEntry, normalization: str) -> tuple[list[float], list[float]]:
    """Mean and std of ``normalization`` ("default": the pretraining statistics, or a key of
    ``entry.alt_normalization`` such as "surgical")."""
    if normalization == "default":
        return list(entry.mean), list(entry.std)
    if normalization in entry.alt_normalization:
        mean, std = entry.alt_normalization[normalization]
        return list(mean), list(std)
    valid = ", ".join(["default", *entry.alt_normalization])
    raise InputError(f"unknown normalization {normalization!r} for {entry.name}; valid: {valid}.")


class SurgeNetModel(nn.Module):
    """Base of the task models: ``backbone`` (a :class:`FeatureBackbone`) plus task layers.

    ``forward`` takes a normalised float NCHW tensor (see :func:`surgenet.create_transform`).
    Capabilities, read by the Predictor, the export tools and the tests:

    * ``exportable``: ``forward`` is a pure function of one image batch (ONNX/TensorRT export).
    * ``streaming``: the model keeps a temporal state and offers ``init_state``/``step``.
    * ``requires_divisible_input``: ``forward`` rejects sizes that are not a multiple of
      ``size_multiple``; ``False`` for all models here, which pad internally.
    """

    task: ClassVar[str] = ""
    exportable: ClassVar[bool] = True
    streaming: ClassVar[bool] = False
    requires_divisible_input: ClassVar[bool] = False

    def __init__(self, backbone: str, num_classes: int, class_names: Sequence[str] | None,
                 normalization: str, input_size: Sequence[int] | None, head: dict[str, Any],
                 pretrained: bool, out_indices: Sequence[int] | None = None,
                 backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise InputError(f"num_classes must be a positive integer, got {num_classes}.")
        entry = get_entry(backbone)
        mean, std = resolve_normalization(entry, normalization)
        names = list(class_names) if class_names is not None else self.default_class_names(int(num_classes))
        if len(names) != int(num_classes):
            raise InputError(f"{len(names)} class_names given for num_classes={num_classes}; give one name per class.")
        size = list(input_size) if input_size is not None else input_size_for(entry, backbone_kwargs)
        if len(size) == 2:
            size = [3, *size]
        if len(size) != 3 or size[0] != 3 or min(size) < 1:
            raise InputError(f"input_size must be (3, H, W) or (H, W), got {input_size}.")
        self.entry = entry
        # backbone_kwargs: network arguments that depend on the weights (DINOv2/v3 register tokens);
        # they are read off the released file when pretrained and saved so the folder rebuilds it.
        self.backbone: FeatureBackbone = load_backbone(entry.name, pretrained=pretrained, out_indices=out_indices,
                                                       **(backbone_kwargs or {}))
        self.config: dict[str, Any] = {
            "surgenet_version": __version__,
            "task": self.task,
            "backbone": entry.name,
            "arch": entry.arch,  # lets load_backbone(weights=this folder) check the architecture
            "family": entry.family,
            "num_classes": int(num_classes),
            "class_names": names,
            "normalization": normalization,
            "mean": mean,
            "std": std,
            "input_size": [int(s) for s in size],
            "out_indices": list(self.backbone.out_indices),
            "backbone_kwargs": dict(self.backbone.layout_kwargs),
            "head": dict(head),
        }

    @staticmethod
    def default_class_names(num_classes: int) -> list[str]:
        return [f"class_{i}" for i in range(num_classes)]

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def size_multiple(self) -> int:
        """Input sizes that are a multiple of this run without internal padding (ViTs: the patch size)."""
        if self.backbone.is_vit:
            return int(self.backbone.model.patch_embed.patch_size[0])
        return 1

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` at the bottom and right to ``size_multiple``, replicating the border pixels.

        ViTs otherwise disagree on partial patches (DINO v1 drops them, DINOv2 zero-pads, DINOv3
        refuses); replicated borders add no artificial edge and keep every pixel in view.
        """
        m = self.size_multiple
        pad_h, pad_w = (-x.shape[-2]) % m, (-x.shape[-1]) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone embedding ``(N, C)`` of normalised images of any size."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected a normalised float tensor (N, 3, H, W), got shape {tuple(x.shape)}. "
                             "Use surgenet.create_transform(model) to prepare images.")
        return self.backbone.forward_embedding(self.pad_input(x))

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, config: dict[str, Any], pretrained: bool = False) -> SurgeNetModel:
        """Build the network a config describes (random weights unless ``pretrained``)."""
        task = config.get("task")
        if task not in TASK_CLASSES:
            raise CheckpointError(f"config names task {task!r}; surgenet knows {', '.join(TASK_CLASSES)}.")
        model_cls = TASK_CLASSES[task]
        try:
            return model_cls(
                backbone=config["backbone"], num_classes=config["num_classes"],
                class_names=config.get("class_names"), normalization=config.get("normalization", "default"),
                input_size=config.get("input_size"), out_indices=config.get("out_indices"),
                backbone_kwargs=config.get("backbone_kwargs"), pretrained=pretrained, **config.get("head", {}))
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"config is incomplete or from an incompatible surgenet version: {exc}. "
                                  "Re-save the model with save_pretrained.") from exc

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> SurgeNetModel:
        """Restore a model written by :meth:`save_pretrained`, strictly.

        A local folder is read without any network access (the backbone's released weights are
        not fetched: the saved tensors carry them). Anything else is taken as a Hub repo id and
        its three files are fetched through the Hugging Face cache.
        """
        folder = Path(path_or_repo).expanduser()
        if not folder.is_dir():
            folder = snapshot_folder(str(path_or_repo), revision, cache_dir)
        config = read_config(folder)
        model = cls.from_config(config) if cls is SurgeNetModel else cls._checked(config)
        load_strict(model, dict(read_file(folder / WEIGHTS_NAME)), str(folder / WEIGHTS_NAME))
        model.eval()
        return model

    @classmethod
    def _checked(cls, config: dict[str, Any]) -> SurgeNetModel:
        if config.get("task") != cls.task:
            raise CheckpointError(f"the folder holds a {config.get('task')} model, not {cls.task}; "
                                  "use surgenet.load_model(folder), which picks the right class.")
        return cls.from_config(config)

    # ----------------------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | Path, card_extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``README.md`` into ``save_directory``.

        Each file is written beside its target and renamed into place, so an interrupted save
        never leaves a half-written file under the final name.
        """
        from safetensors.torch import save_file

        from ..zoo.cards import render_card

        folder = Path(save_directory).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for key, value in self.state_dict().items():
            value = value.detach().to("cpu").contiguous()
            if value.data_ptr() in seen and value.numel():  # safetensors refuses shared storage
                value = value.clone()
            seen.add(value.data_ptr())
            tensors[key] = value
        extra = {"num_classes": self.num_classes, "class_names": self.class_names,
                 "input_size": self.config["input_size"], "head": self.config["head"],
                 "mean": self.config["mean"], "std": self.config["std"], **(card_extra or {})}
        with atomic_target(folder / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        atomic_write_text(folder / CONFIG_NAME, json.dumps(self.config, indent=2) + "\n")
        card = render_card(self.entry, self.task, extra)
        atomic_write_text(folder / CARD_NAME, card)
        return folder

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str | None = None, revision: str | None = None,
                    create_pr: bool = False, card_extra: dict[str, Any] | None = None):
        """Save into a temporary folder and upload it to ``repo_id`` (created if missing).

        Returns huggingface_hub's ``CommitInfo``. The card's license is the backbone's: the
        released SurgeNet weights are non-commercial, and so are models fine-tuned from them.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory(prefix="surgenet-push-") as tmp:
            self.save_pretrained(tmp, card_extra={"repo_id": repo_id, **(card_extra or {})})
            return api.upload_folder(
                repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision, create_pr=create_pr,
                commit_message=commit_message or f"Upload surgenet {self.task} model ({self.entry.name})")


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a saved task model, checked for the keys every model needs."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}; it was not written by save_pretrained. "
                              "Pass a model name with task= and weights= instead.")
    try:
        config = json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}). Re-save the model with save_pretrained.") from exc
    missing = [k for k in ("task", "backbone", "num_classes") if k not in config]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it is not a surgenet task model config "
                              "(a backbone folder loads with surgenet.load_backbone(name, weights=folder)).")
    if not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}; copy the whole folder.")
    check_saved_numbers(config, path)
    return config


def check_saved_numbers(config: dict[str, Any], path: Path) -> None:
    """The numbers of a saved ``config.json`` that size what is built (``num_classes``, the sides
    of ``input_size``) inside the table of bounds (:mod:`surgenet.bounds`): a damaged or
    hand-edited file fails here, in one line naming the file and the key, not in a huge allocation."""
    from ..bounds import check_number

    if "num_classes" in config:
        check_number("num_classes", config["num_classes"], f"{path}: num_classes")
    size = config.get("input_size")
    if size is not None:
        if not isinstance(size, (list, tuple)) or len(size) not in (2, 3):
            raise CheckpointError(f"{path}: input_size must be [3, H, W] or [H, W], got {size!r}.")
        for side in size[-2:]:
            check_number("image_side", side, f"{path}: input_size")


def snapshot_folder(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local folder of a Hub model repo (config, weights, card), through the Hugging Face cache;
    offline and not cached is one line naming the fix."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if repo_id.count("/") != 1:
        raise InputError(f"{repo_id!r} is neither a folder nor a Hub repo id (owner/name). Pass the folder "
                         "written by save_pretrained.")
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                 allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    except LocalEntryNotFoundError as exc:
        from ..exceptions import WeightsNotAvailableError

        raise WeightsNotAvailableError(
            f"{repo_id} is no local folder, and as a Hub repo id it is not in the Hugging Face cache and "
            "cannot be downloaded (offline or no network). Check the folder's path, or download the repo on "
            "a machine with network (huggingface-cli download).") from exc
    except HfHubHTTPError as exc:
        raise CheckpointError(f"cannot fetch {repo_id} from the Hub: {exc}") from exc
    return Path(path)
