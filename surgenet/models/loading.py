"""``load_model``: a task model from a zoo name, a saved folder, a Hub repo or the authors' checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..zoo.checkpoint import DINO_HEAD_PREFIXES, load_strict
from ..exceptions import CheckpointError, InputError, KeyMismatchError, UnknownModelError
from ..zoo.factory import layout_network_kwargs, normalised_state_dict, read_weights, recorded_network_kwargs
from ..zoo.registry import ModelEntry, get_entry
from .authors import authors_layout, convert_authors_fpn, explain_mismatch, flat_state_dict
from .base import CONFIG_NAME, TASK_CLASSES, SurgeNetModel

logger = logging.getLogger(__name__)

TASK_PREFIXES = ("decoder.", "head.", "temporal.")
DEFAULT_NUM_CLASSES = {"cvs": 3}


def load_model(name_or_dir: str | Path, task: str | None = None, num_classes: int | None = None,
               pretrained: bool = True, weights: str | Path | None = None, **model_kwargs: Any) -> SurgeNetModel:
    """A task model (``segmentation``, ``phase``, ``cvs`` or ``tools``) on a SurgeNet backbone, in eval mode.

    Args:
        name_or_dir: a zoo name (``surgenet.list_models()``), a folder written by
            ``save_pretrained`` (restored strictly, offline) or the Hub repo id of one.
        task: ``segmentation``, ``phase``, ``cvs`` or ``tools``; required with a zoo name.
        num_classes: classes (segmentation) or phases (phase); CVS defaults to its 3 criteria.
        pretrained: load the backbone's released weights (the task layers start random).
        weights: instead, a local file or folder: a segmentation checkpoint of the authors' code
            (``MetaFormerFPN``/``ConvNextFPN``/``PVTV2FPN``), a ``.safetensors``/``.pth`` or folder
            of a surgenet task model, or backbone-only weights (then the task layers start random).
        model_kwargs: more constructor options of the task class, e.g. ``class_names``,
            ``normalization="surgical"``, ``input_size``, ``temporal="lstm"``.

    Examples:
        >>> model = surgenet.load_model("surgenetxl-caformer", task="segmentation", num_classes=8)
        >>> model(torch.randn(1, 3, 256, 256)).shape
        torch.Size([1, 8, 256, 256])
    """
    source = model_source(name_or_dir)
    if source != "zoo":
        if weights is not None or model_kwargs:
            raise InputError(f"{name_or_dir} is a saved model; it takes no weights= or model options. "
                             "Load it alone, or build a new model from a zoo name.")
        model = SurgeNetModel.from_pretrained(name_or_dir)
        _check_matches(model.config, task, num_classes, str(name_or_dir))
        return model
    entry = get_entry(str(name_or_dir))
    task = _check_task(task)
    if num_classes is None:
        num_classes = DEFAULT_NUM_CLASSES.get(task)
        if num_classes is None:
            raise InputError(f"num_classes is required for task {task!r} (classes to segment, phases to recognise "
                             "or tools to detect, e.g. 7 for Cholec80 phases, 6 for CholecT50 tools).")
    if weights is None:
        model = TASK_CLASSES[task](entry.name, num_classes, pretrained=pretrained, **model_kwargs)
        logger.info("%s: %s layers initialised randomly; fine-tune them before use.", entry.name, task)
        return model.eval()
    return _load_with_weights(entry, task, num_classes, Path(weights).expanduser(), model_kwargs).eval()


def _check_task(task: str | None) -> str:
    valid = ", ".join(sorted(TASK_CLASSES))
    if task is None:
        raise InputError(f"task= is required with a zoo name; valid tasks: {valid}.")
    if task not in TASK_CLASSES:
        raise InputError(f"unknown task {task!r}; valid tasks: {valid}.")
    return task


SOURCE_HELP = "a zoo name (surgenet list), a save_pretrained folder (e.g. finetune's OUT/best) or a Hub repo id"


def model_source(name_or_dir: str | Path) -> str:
    """What ``name_or_dir`` names: ``"folder"`` (an existing folder), ``"zoo"`` or ``"hub"``.

    Decided without touching the network: an existing folder wins; a string that looks like a
    path (``./x``, ``~/x``, ``/x``, ``x/``, ``a/b/c``, a backslash) must be an existing folder;
    then a zoo name; then ``owner/name`` if it is a valid Hub repo id. Anything else raises an
    error that names the three accepted forms.
    """
    text = str(name_or_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.exists():
        raise InputError(f"{text} is a file, not a model folder; pass {SOURCE_HELP}. A weights file goes with "
                         "a zoo name: --model NAME --weights FILE (weights= in Python).")
    if _looks_like_path(text):
        raise InputError(f"there is no folder {text}; check the path, or pass {SOURCE_HELP}.")
    try:
        get_entry(text)
        return "zoo"
    except UnknownModelError as exc:
        unknown = exc
    if text.count("/") == 1:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(text)
        except HFValidationError:
            raise InputError(f"{text!r} is neither a folder, a zoo name nor a valid Hub repo id; pass "
                             f"{SOURCE_HELP}.") from None
        return "hub"
    raise UnknownModelError(f"{unknown} No folder {text} exists either; a model folder or a Hub repo id "
                            "(owner/name) also work.") from None


def _looks_like_path(text: str) -> bool:
    return (text.startswith((".", "~", "/")) or text.endswith("/") or "\\" in text
            or text.count("/") > 1 or Path(text).is_absolute())


def _check_matches(config: dict[str, Any], task: str | None, num_classes: int | None, source: str) -> None:
    if task is not None and task != config["task"]:
        raise InputError(f"{source} holds a {config['task']} model, not {task}.")
    if num_classes is not None and int(num_classes) != int(config["num_classes"]):
        raise InputError(f"{source} has {config['num_classes']} classes, not {num_classes}. To train a head with "
                         "other classes, build a new model from the zoo name with weights=FOLDER.")


def _load_with_weights(entry: ModelEntry, task: str, num_classes: int, path: Path,
                       model_kwargs: dict[str, Any]) -> SurgeNetModel:
    source = str(path)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        from ..zoo.checkpoint import read_folder_config

        config = read_folder_config(path) or {}
        if "task" in config:  # a saved task model: its own config describes it fully
            model = SurgeNetModel.from_pretrained(path)
            _check_matches(model.config, task, num_classes, source)
            if get_entry(model.config["backbone"]).arch != entry.arch:
                raise CheckpointError(f"{source} holds a {model.config['backbone']} model, not {entry.name}.")
            return model
    obj = read_weights(path, entry)
    sd = flat_state_dict(obj, source)
    if authors_layout(sd) is not None:
        if task != "segmentation":
            raise CheckpointError(f"{source} is a segmentation checkpoint of the authors' code; load it with "
                                  "task='segmentation'.")
        converted, dropped = convert_authors_fpn(sd, entry, source)
        if "normalization" not in model_kwargs:
            # The authors' downstream code normalised with surgical-frame statistics.
            model_kwargs = {**model_kwargs, "normalization": "surgical"}
            logger.info("%s: authors' checkpoint, using the surgical normalisation of their code.", source)
        logger.info("%s: dropped the unused classification head (%d keys).", source, len(dropped))
        model = TASK_CLASSES[task](entry.name, num_classes, pretrained=False, **model_kwargs)
        try:
            load_strict(model, converted, source)
        except KeyMismatchError as exc:
            raise explain_mismatch(exc, source) from None
        return model
    if _is_task_layout(sd):
        backbone_sd = {k.removeprefix("backbone.model."): v for k, v in sd.items() if k.startswith("backbone.model.")}
        model = TASK_CLASSES[task](entry.name, num_classes, pretrained=False,
                                   backbone_kwargs=layout_network_kwargs(entry, backbone_sd), **model_kwargs)
        load_strict(model, sd, source)
        return model
    backbone_sd = normalised_state_dict(entry, obj, source)
    # A surgenet-train run (RUN/teacher) records the network arguments it trained with; the task
    # model is built with them and saves them, so it rebuilds the same network later.
    backbone_kwargs = {**recorded_network_kwargs(path, obj), **layout_network_kwargs(entry, backbone_sd)}
    model = TASK_CLASSES[task](entry.name, num_classes, pretrained=False, backbone_kwargs=backbone_kwargs,
                               **model_kwargs)
    load_strict(model.backbone.model, backbone_sd, source)
    logger.info("%s: backbone weights only; %s layers initialised randomly.", source, task)
    return model


def _is_task_layout(sd: dict) -> bool:
    """Keys of a surgenet task model: ``backbone.model.*`` plus task layers (not a DINO head)."""
    return any(k.startswith("backbone.model.") for k in sd) and any(
        k.startswith(TASK_PREFIXES) and not k.startswith(DINO_HEAD_PREFIXES) for k in sd)


__all__ = ["load_model", "model_source"]
