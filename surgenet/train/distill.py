"""Distillation: ``surgenet-train distill``: a saved task model teaches a small timm student.

The teacher is a task model folder (``finetune``'s ``OUT/best``, a Hub id) or a zoo name with
``--teacher-weights`` (a task checkpoint); segmentation, CVS and tools (phase models carry a
temporal state that frame-wise imitation does not cover). The student is any timm architecture
that surgenet accepts as a backbone, with the teacher's task head, classes and names; the CPU
default is ``mobilenetv4_conv_small`` with a slimmer FPN (128 pyramid / 64 segmentation channels).

Data: ``--data`` (repeatable) takes unlabelled frames: folders, frame lists, videos or folders of
videos sampled at ``--fps``; ``--train`` adds a labelled set (``FORMAT:PATH``, as finetune) whose
frames serve both terms. The teacher labels every frame once, into ``OUT/teacher_cache``
(:mod:`surgenet.train.distill_cache`: memory-mapped, float16 logits at 1/``--cache-reduction`` of
the input side, resumable after a kill). Loss (:mod:`surgenet.train.distill_loss`):
``kd_weight * T^2 * KL(teacher_T || student_T) + gt_weight * label loss`` with ``T =
--temperature`` (default 2), weights 1 and 1 (``--gt-weight 0``: imitation only); the label
loss and the training views (scale-crops, flips, colour jitter) are fine-tuning's. Training,
``--resume``, ``OUT/log.jsonl``, ``OUT/curves.png`` and validation on ``--val`` are the
fine-tuning ones; the best student goes to ``OUT/best`` (``surgenet.load_model(OUT/best)``), its
card naming the teacher, the data and the validation scores of both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..exceptions import InputError
from .run_state import seed_everything
from .config import check_numbers, to_dict
from .resume import check_resumed_settings

logger = logging.getLogger(__name__)

DEFAULT_STUDENT = "mobilenetv4_conv_small"
# A slimmer FPN for the small students: the authors' 256/128 head alone costs more than the backbone.
DEFAULT_STUDENT_HEAD = {"pyramid_channels": 128, "segmentation_channels": 64}
CACHE_DIR = "teacher_cache"
DISTILL_TASKS = ("segmentation", "cvs", "tools")


@dataclass
class DistillConfig:
    """What a distillation run needs (``surgenet-train distill`` flags, its YAML and ``--set``)."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "num_classes": "num_classes", "fps": "fps", "image_size": "image_side", "cache_reduction": "cache_reduction",
        "temperature": "temperature", "kd_weight": "loss_weight", "gt_weight": "loss_weight",
        "dice_weight": "loss_weight", "crop_scale": "share", "epochs": "epochs", "batch_size": "batch_size",
        "lr": "lr", "backbone_lr": "lr_or_zero", "weight_decay": "weight_decay", "warmup": "fraction",
        "grad_clip": "grad_clip", "patience": "patience", "teacher_batch_size": "batch_size",
        "num_workers": "workers", "seed": "seed",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (("crop_scale", "ordered", ""),)

    teacher: str = ""  # a task model folder, a Hub id, or a zoo name with teacher_weights
    teacher_weights: str | None = None
    task: str | None = None  # null: the teacher's
    num_classes: int | None = None  # zoo-name teachers only
    student: str = DEFAULT_STUDENT  # a timm architecture name
    student_weights: str | None = None  # backbone weights for the student (e.g. a timm ImageNet file)
    student_kwargs: dict[str, Any] = field(default_factory=dict)  # head options; null keys: the defaults
    data: list[str] = field(default_factory=list)  # unlabelled frames: folders, lists, videos
    fps: float = 1.0  # sampling rate of videos in data
    train: str | None = None  # a labelled set (FORMAT:PATH) used by both loss terms
    val: str | None = None  # a labelled set: picks the best epoch, scores teacher and student
    image_size: int = 256
    cache_reduction: int = 4  # segmentation logits cached at image_size / this
    temperature: float = 2.0
    kd_weight: float = 1.0
    gt_weight: float = 1.0
    dice_weight: float = 1.0  # label loss of segmentation: cross-entropy + dice_weight * soft Dice
    class_weighting: str = "inverse-sqrt"  # its cross-entropy class weights, as finetune (none, median-frequency)
    crop_scale: tuple[float, float] = (0.5, 1.0)  # segmentation training views: share of the frame's area
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    backbone_lr: float | None = None  # null: lr (a student starts from random weights)
    weight_decay: float = 0.01
    warmup: float = 0.1
    grad_clip: float = 1.0
    patience: int = 0
    teacher_batch_size: int = 8
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"


def check_student(name: str) -> str:
    """``name`` if it is a timm architecture surgenet builds as a backbone; else an InputError with close names."""
    import difflib

    import timm

    from ..zoo.backbones.architectures import is_timm_architecture

    if is_timm_architecture(name):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"--student {name!r} is not a timm architecture.{hint} The student is a timm model name "
                     f"(e.g. {DEFAULT_STUDENT}, resnet18, efficientvit_b0, repvit_m0_9, fastvit_t8).")


def teacher_config(cfg: DistillConfig) -> dict[str, Any]:
    """The teacher's task and classes, read before anything is built (config.json of a folder)."""
    from ..models.base import read_config
    from ..models.loading import model_source

    if not cfg.teacher:
        raise InputError("pass --teacher: a task model folder (e.g. finetune's OUT/best), a Hub id, or a zoo name "
                         "with --teacher-weights.")
    source = model_source(cfg.teacher)
    if source == "folder":
        config = read_config(Path(cfg.teacher).expanduser())
    elif source == "zoo":
        if cfg.teacher_weights is None:
            raise InputError(f"--teacher {cfg.teacher} is a zoo backbone whose task layers would be random; pass "
                             "--teacher-weights (a task checkpoint) or a fine-tuned folder as --teacher.")
        if cfg.task is None:
            raise InputError(f"--teacher {cfg.teacher} is a zoo name; say its --task.")
        config = {"task": cfg.task, "num_classes": cfg.num_classes}
    else:
        config = {}  # a Hub id: read when the model is loaded
    task = config.get("task")
    if task is not None and cfg.task is not None and task != cfg.task:
        raise InputError(f"the teacher {cfg.teacher} is a {task} model, not {cfg.task}; pass a {cfg.task} teacher "
                         f"or --task {task}.")
    if task is not None and task not in DISTILL_TASKS:
        raise InputError(f"the teacher {cfg.teacher} is a {task} model; distillation covers "
                         f"{', '.join(DISTILL_TASKS)}.")
    return config


def open_inputs(cfg: DistillConfig, task: str):
    """The unlabelled sources, the labelled training and validation readers; each is checked here."""
    from .data import open_source
    from .finetune_tasks import open_labelled

    if not cfg.data and not cfg.train:
        raise InputError("pass --data (unlabelled frames or videos) and/or --train (a labelled set).")
    unlabelled = [open_source(p, fps=cfg.fps) for p in cfg.data]
    for source in unlabelled:
        if len(source) == 0:
            raise InputError(f"--data {source.name} holds no frames.")
    train = open_labelled(cfg.train, task) if cfg.train else None
    val = open_labelled(cfg.val, task) if cfg.val else None
    return unlabelled, train, val


def load_teacher(cfg: DistillConfig, task: str):
    from ..models import load_model

    if cfg.teacher_weights is not None:
        return load_model(cfg.teacher, task=task, num_classes=cfg.num_classes, pretrained=False,
                          weights=cfg.teacher_weights)
    return load_model(cfg.teacher, task=task)


def build_student(cfg: DistillConfig, teacher):
    from ..models import load_model

    kwargs = dict(DEFAULT_STUDENT_HEAD) if teacher.task == "segmentation" else {}
    kwargs.update({k: v for k, v in cfg.student_kwargs.items() if v is not None})
    kwargs["input_size"] = [3, cfg.image_size, cfg.image_size]
    kwargs["class_names"] = teacher.class_names
    return load_model(cfg.student, task=teacher.task, num_classes=teacher.num_classes, pretrained=False,
                      weights=cfg.student_weights, **kwargs)


def _check_classes(teacher, *readers) -> None:
    for reader in readers:
        if reader is not None and len(reader.class_names) != teacher.num_classes:
            raise InputError(f"the labelled set has {len(reader.class_names)} classes "
                             f"({', '.join(reader.class_names)}) and the teacher {teacher.num_classes} "
                             f"({', '.join(teacher.class_names)}); the student learns the teacher's classes.")


def _check_numbers(cfg: DistillConfig) -> None:
    for key in ("temperature", "image_size", "cache_reduction", "epochs", "batch_size", "lr"):
        if not getattr(cfg, key) > 0:
            raise InputError(f"{key} must be > 0, not {getattr(cfg, key)}; fix --{key.replace('_', '-')}.")
    for key in ("kd_weight", "gt_weight"):
        if getattr(cfg, key) < 0:
            raise InputError(f"{key} must be >= 0, not {getattr(cfg, key)}.")
    if cfg.image_size % cfg.cache_reduction:
        raise InputError(f"--cache-reduction {cfg.cache_reduction} must divide --image-size {cfg.image_size}.")
    from .losses import CLASS_WEIGHTINGS

    if cfg.class_weighting not in CLASS_WEIGHTINGS:
        raise InputError(f"class_weighting {cfg.class_weighting!r} is not one of {', '.join(CLASS_WEIGHTINGS)}.")
    low, high = (float(v) for v in cfg.crop_scale)
    if not 0 < low <= high <= 1:
        raise InputError(f"crop_scale {list(cfg.crop_scale)} must be two shares 0 < low <= high <= 1.")


def distill(cfg: DistillConfig, out_dir: str | Path, resume: bool = False, on_cache_batch=None) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into ``cfg.student``; returns the best validation metrics (as finetune).

    Every input is checked before the teacher runs: the teacher's task, the student's name, the
    data (frames present, labels valid), the device and, with ``resume``, ``OUT/last.pth``.
    ``on_cache_batch(n)`` is called after each batch of teacher predictions is on disk.
    """
    from .. import create_transform
    from ..devices import resolve_device
    from .distill_cache import FrameSet, TeacherCache
    from .distill_task import DistillTask
    from .finetune import LAST, RESUMABLE_CHANGES, _optimizer, load_checkpoint_state, run_epochs
    from .finetune_tasks import segmentation_class_weight, weights_digest

    check_numbers(cfg)  # the table of bounds (a config built in Python, not read by load_config)
    _check_numbers(cfg)
    tconfig = teacher_config(cfg)
    check_student(cfg.student)
    task = cfg.task or tconfig.get("task")
    out = Path(out_dir)
    device = resolve_device(cfg.device)
    state = load_checkpoint_state(out / LAST) if resume else None
    if state is not None:  # before the teacher runs or any frame is read
        check_resumed_settings(state.get("config") or {}, cfg, RESUMABLE_CHANGES)
    unlabelled, train, val = open_inputs(cfg, task or "segmentation")
    teacher = load_teacher(cfg, task).to(device).eval()
    task = teacher.task
    if task not in DISTILL_TASKS:
        raise InputError(f"the teacher is a {task} model; distillation covers {', '.join(DISTILL_TASKS)}.")
    _check_classes(teacher, train, val)
    seed_everything(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    frames = FrameSet(unlabelled, [train] if train is not None else [])
    key = {"teacher": str(cfg.teacher), "teacher_weights_digest": weights_digest(teacher),
           "mean": list(teacher.config["mean"]), "std": list(teacher.config["std"])}
    cache = TeacherCache(out / CACHE_DIR, frames, task, teacher.num_classes, cfg.image_size,
                         cfg.cache_reduction if task == "segmentation" else 1, key)
    computed = cache.fill(teacher, teacher.config["mean"], teacher.config["std"], cfg.teacher_batch_size,
                          cfg.num_workers, on_batch=on_cache_batch)
    logger.info("teacher predictions: %d computed now, %d reused", computed, len(frames) - computed)

    student = build_student(cfg, teacher).train().to(device)
    transform = create_transform(student)
    class_weight = (segmentation_class_weight(train, cfg.class_weighting)
                    if task == "segmentation" and train is not None and cfg.gt_weight > 0 else None)
    dtask = DistillTask(cfg, task, cache.folder, val, class_weight=class_weight)
    dtask.bind(student, transform)
    teacher_scores = _teacher_scores(teacher, val, cfg) if val is not None else None
    teacher.to("cpu")  # its work is done: free the accelerator for the student
    optimizer = _optimizer(student, _with_backbone_lr(cfg))
    provenance = {"teacher": str(cfg.teacher), "teacher_backbone": teacher.config["backbone"],
                  "unlabelled_data": [f"{s.name} ({len(s)} frames)" for s in unlabelled],
                  "labelled_data": f"{cfg.train} ({len(train)} frames)" if train is not None else None,
                  "validation": cfg.val}

    def on_best(record: dict[str, Any]) -> dict[str, Any]:
        return {"metrics": _card_metrics(record, teacher_scores, student.class_names),
                "training": _card_training(cfg, provenance, len(frames), record)}

    return run_epochs(cfg, dtask, student, optimizer, out, state, resume,
                      card_extra={"distilled": {**to_dict(cfg), **provenance, "teacher_val": teacher_scores}},
                      title=f"{task}: {cfg.student} distilled from {Path(str(cfg.teacher)).name}", on_best=on_best)


def _with_backbone_lr(cfg: DistillConfig):
    """The optimizer's view of the config: a random student's backbone learns at the full lr."""
    from types import SimpleNamespace

    blr = cfg.lr if cfg.backbone_lr is None else cfg.backbone_lr
    return SimpleNamespace(lr=cfg.lr, backbone_lr=blr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def _teacher_scores(teacher, val, cfg: DistillConfig) -> dict[str, Any]:
    """The teacher's validation scores at the student's input size (the same frames, the same metric)."""
    from .. import create_transform
    from .data.labelled import LabelSamples, SegmentationSamples
    from .distill_task import DistillTask

    transform = create_transform(teacher, size=cfg.image_size)
    probe = DistillTask(cfg, teacher.task, Path("."), val)
    probe.val_set = (SegmentationSamples(val, transform) if teacher.task == "segmentation"
                     else LabelSamples(val, transform))
    return {k: v for k, v in probe.validate(teacher).items() if k != "confusion"}


def _card_metrics(record: dict[str, Any], teacher_scores: dict[str, Any] | None, names: list[str]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    per_class = "iou" if "val_iou" in record else "ap"
    for who, scores in (("student", {k[4:]: v for k, v in record.items() if k.startswith("val_")}),
                        ("teacher", teacher_scores or {})):
        if "score" in scores:
            metrics[f"{who} validation score"] = f"{scores['score']:.4f}"
        for name, value in zip(names, scores.get(per_class, []) or []):
            metrics[f"{who} {per_class.upper()} {name}"] = f"{value:.4f}"
    return metrics


def _card_training(cfg: DistillConfig, provenance: dict[str, Any], n_frames: int, record: dict[str, Any]) -> str:
    unlabelled = "; ".join(provenance["unlabelled_data"]) or "none"
    return (f"distilled from the teacher `{provenance['teacher']}` ({provenance['teacher_backbone']}) on "
            f"{n_frames} frames: unlabelled {unlabelled} (videos at {cfg.fps:g} fps); labelled "
            f"{provenance['labelled_data'] or 'none'}. Loss {cfg.kd_weight:g} x T^2 KL (T={cfg.temperature:g}) + "
            f"{cfg.gt_weight:g} x label loss, {cfg.epochs} epochs at {cfg.image_size}x{cfg.image_size}, batch "
            f"{cfg.batch_size}, lr {cfg.lr:g}; best epoch {record.get('epoch')}; validated on "
            f"{provenance['validation'] or 'no validation set'}.")

