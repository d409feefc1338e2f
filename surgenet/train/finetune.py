"""Fine-tuning of the task heads: ``surgenet-train finetune --task segmentation|phase|cvs|tools``.

``--train``/``--val`` take a dataset as ``FORMAT:PATH`` or a path whose format is detected
(``surgenet-train formats`` lists them): Endoscapes, CholecT50, Cholec80, CholecSeg8k, the plain
CSV, or a folder (segmentation ``images/*`` + ``masks/<stem>.png`` class ids with 255 = ignore;
phase per-video ``frame,phase`` CSVs; CVS ``image,c1,c2,c3`` CSV). Every label is checked before
training starts; mask ids beyond the classes (``--num-classes``) become 255 with a warning.

Recipe (standard practice, no tuning on the validation set): AdamW (no weight decay on norms and
biases), linear warm-up over the first 10 % of steps then a cosine to 1 %, gradient clipping at
norm 1, the task layers at ``--lr`` and the backbone at a tenth of it, pretrained or not (for a
random backbone the tenth is the architecture's own recipe scaled to a small batch: CAFormer
trains with 4e-3 at batch 4096, about 1.8e-4 at batch 8 by square-root scaling; the full 1e-3
reached only 0.224 mIoU in the 3-epoch Endoscapes example of the README). Segmentation:
cross-entropy weighted per class by ``1 / sqrt(share of pixels)`` of the training masks
(``--class-weighting``) plus soft Dice (thin structures such as the cystic artery weigh as much
as the gallbladder), 255 = ignore, random scale-crops with flips and colour jitter that keep the
mask aligned; scores at each frame's own size. CVS and tools: binary cross-entropy, optionally
with balanced positive weights (``--label-weighting balanced``). Each epoch ends with validation;
training stops early after ``--patience`` epochs without a better score. The best model is
written with ``save_pretrained`` to ``OUT/best`` (load it with ``surgenet.load_model(OUT/best)``),
the latest state to ``OUT/last.pth`` (``--resume`` continues exactly), every epoch to
``OUT/log.jsonl`` and the curves to ``OUT/curves.png``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..exceptions import InputError
from ..io.atomic import atomic_write_text
from ..tasks import MULTI_LABEL_TASKS
from .run_state import atomic_torch_save, capture_rng, read_checkpoint_file, restore_rng, seed_everything
from .config import check_numbers, dump_yaml, to_dict
from .resume import check_resumed_settings
from .runlog import MetricLog, records_until
from .schedules import warmup_cosine

logger = logging.getLogger(__name__)

LAST = "last.pth"
# Settings a resumed fine-tuning or distillation run may change: how long and where it runs, not what it trains.
RESUMABLE_CHANGES = ("epochs", "num_workers", "device", "patience")
FINETUNE_FORMAT = "surgenet-finetune/1"


@dataclass
class FinetuneConfig:
    """What a fine-tuning run needs (``surgenet-train finetune`` flags, its YAML and ``--set``)."""

    NUMBERS: ClassVar[dict[str, str]] = {
        "num_classes": "num_classes", "image_size": "image_side", "epochs": "epochs", "batch_size": "batch_size",
        "lr": "lr_or_zero", "backbone_lr": "lr_or_zero", "weight_decay": "weight_decay", "warmup": "fraction",
        "grad_clip": "grad_clip", "patience": "patience", "num_workers": "workers", "seed": "seed",
        "dice_weight": "loss_weight", "crop_scale": "share", "clip_length": "clip_length",
    }
    RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (("crop_scale", "ordered", ""),)

    task: str = "segmentation"
    model: str = "surgenetxl-caformer"  # zoo name: the backbone
    weights: str | None = None  # backbone (or task model) weights; null: the released ones
    pretrained: bool = True  # false: random backbone (for tests and ablations)
    num_classes: int | None = None  # null: the training set's classes
    class_names: list[str] | None = None
    train: str = ""
    val: str | None = None
    image_size: int | None = None  # null: the zoo entry's input size
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3  # task layers
    backbone_lr: float | None = None  # null: lr / 10; 0 freezes
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of all steps with a linear warm-up
    grad_clip: float = 1.0  # max gradient norm (0: off)
    patience: int = 5  # stop after this many epochs without a better validation score (0: never)
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"
    # segmentation only
    dice_weight: float = 1.0  # loss = cross-entropy + dice_weight * soft Dice
    class_weighting: str = "inverse-sqrt"  # cross-entropy class weights: none, inverse-sqrt, median-frequency
    crop_scale: tuple[float, float] = (0.5, 1.0)  # share of the frame's area in a training crop
    # cvs and tools only
    label_weighting: str = "none"  # binary cross-entropy pos_weight: none, balanced ((1 - p) / p)
    # phase only
    cache_features: bool = True  # train the temporal model on frozen per-frame embeddings
    clip_length: int = 16  # end to end: frames per training clip
    temporal: str = "tcn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def build_model(cfg: FinetuneConfig, num_classes: int | None = None, class_names: list[str] | None = None):
    from ..models import load_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.image_size:
        kwargs.setdefault("input_size", [3, cfg.image_size, cfg.image_size])
    names = cfg.class_names or class_names
    if names:
        kwargs.setdefault("class_names", list(names))
    if cfg.task == "phase":
        kwargs.setdefault("temporal", cfg.temporal)
    num_classes = cfg.num_classes or num_classes or (len(cfg.class_names) if cfg.class_names else None)
    return load_model(cfg.model, task=cfg.task, num_classes=num_classes, pretrained=cfg.pretrained and not cfg.weights,
                      weights=cfg.weights, **kwargs)


def _class_names_for(cfg: FinetuneConfig, data_names: list[str]) -> tuple[int, list[str] | None]:
    """The number of classes and their names: the flags win; else the training set's."""
    n = cfg.num_classes or (len(cfg.class_names) if cfg.class_names else None) or len(data_names)
    if n < len(data_names) and cfg.task in ("segmentation", "phase"):
        raise InputError(f"--num-classes {n} is fewer than the {len(data_names)} classes of the training set "
                         f"({', '.join(data_names)}); use --num-classes {len(data_names)}.")
    if n != len(data_names) and cfg.task in MULTI_LABEL_TASKS:
        raise InputError(f"--num-classes {n} differs from the {len(data_names)} labels of the training set "
                         f"({', '.join(data_names)}); drop --num-classes or fix it.")
    names = cfg.class_names or (list(data_names) if len(data_names) == n else None)
    return n, names


def backbone_lr(cfg: FinetuneConfig) -> float:
    if cfg.backbone_lr is not None:
        return cfg.backbone_lr
    return cfg.lr * 0.1  # pretrained: keep its features; random: the batch-scaled recipe (module docstring)


def _optimizer(model, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW; the backbone and the task layers in separate groups; no decay on 1-D tensors (norms, biases)."""
    ids = {id(p) for p in model.backbone.parameters()}
    blr = backbone_lr(cfg)
    if blr <= 0:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    groups = []
    for name, lr, params in (("task", cfg.lr, [p for p in model.parameters() if id(p) not in ids]),
                             ("backbone", blr, list(model.backbone.parameters()) if blr > 0 else [])):
        params = [p for p in params if p.requires_grad]
        for decay, chosen in ((cfg.weight_decay, [p for p in params if p.ndim > 1]),
                              (0.0, [p for p in params if p.ndim <= 1])):
            if chosen:
                groups.append({"params": chosen, "lr": lr, "base_lr": lr, "weight_decay": decay, "name": name})
    return torch.optim.AdamW(groups)


def lr_factors(total_steps: int, warmup: float, final: float = 0.01) -> np.ndarray:
    """Factor of each step's lr: linear from 1/(w+1) towards 1 over the share ``warmup`` of the
    steps, then a half cosine from 1 to ``final``."""
    return warmup_cosine(total_steps, int(round(total_steps * warmup)), 1.0, final, warmup_ends_at_base=False)


def _check_weightings(cfg: FinetuneConfig) -> None:
    """Loss weighting names from a config file or ``--set`` fail here, before any data is read."""
    from .finetune_tasks import LABEL_WEIGHTINGS
    from .losses import CLASS_WEIGHTINGS

    for key, valid in (("class_weighting", CLASS_WEIGHTINGS), ("label_weighting", LABEL_WEIGHTINGS)):
        if getattr(cfg, key) not in valid:
            raise InputError(f"{key} {getattr(cfg, key)!r} is not one of {', '.join(valid)}; "
                             f"fix --{key.replace('_', '-')} or the config.")


def finetune(cfg: FinetuneConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg.task``'s model; returns the best validation metrics (``score`` and the rest)."""
    from .. import create_transform
    from ..devices import resolve_device
    from .finetune_tasks import TASKS

    if cfg.task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}, not {cfg.task!r}.")
    if not cfg.train:
        raise InputError("pass --train (the training set; formats: surgenet-train finetune --help).")
    check_numbers(cfg)  # the table of bounds (a config built in Python, not read by load_config)
    _check_weightings(cfg)
    out = Path(out_dir)
    device = resolve_device(cfg.device)  # a device that is not there fails before data and model are touched
    state = load_checkpoint_state(out / LAST) if resume else None  # a missing state fails before data loading
    if state is not None:
        check_resumed_settings(state.get("config") or {}, cfg, RESUMABLE_CHANGES)
    seed_everything(cfg.seed)
    task = TASKS[cfg.task](cfg)  # opens and checks every label of the datasets
    num_classes, class_names = _class_names_for(cfg, task.class_names)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, num_classes, class_names).train()
    model.to(device)
    transform = create_transform(model)
    task.bind(model, transform)
    if cfg.task == "phase":
        task.prepare(model, out / "features")
        model.train()
    optimizer = _optimizer(model, cfg)
    return run_epochs(cfg, task, model, optimizer, out, state, resume,
                      card_extra={"fine_tuned": to_dict(cfg)}, title=f"{cfg.task}: {cfg.model}")


def run_epochs(cfg, task, model, optimizer: torch.optim.Optimizer, out: Path, state: dict[str, Any] | None,
               resume: bool, card_extra: dict[str, Any], title: str, on_best=None) -> dict[str, Any]:
    """The epochs of a run: the lr schedule, validation, the best model to ``OUT/best``, the log,
    the curves and ``OUT/last.pth`` after every epoch (``state``: a loaded ``last.pth`` to continue).

    Shared by fine-tuning and distillation (:mod:`surgenet.train.distill`): ``task`` offers
    ``train_batches``, ``loss`` and ``validate``; ``cfg`` the schedule fields (epochs, warmup,
    patience, grad_clip). ``on_best(record)``, when given, returns more card fields for the best model.
    """
    from tqdm.auto import tqdm

    from .curves import PLOT_FILE, plot_curves

    steps_per_epoch = max(1, len(task.train_batches(0)))
    factor = lr_factors(cfg.epochs * steps_per_epoch, cfg.warmup)
    start_epoch, best = 0, {"score": -float("inf")}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best = state["epoch"], state["best"]
        restore_rng(state["rng"])
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    # Resumed: keep the epochs up to last.pth's; any later one was logged by the killed run and runs again.
    log = MetricLog(out / "log.jsonl", resume_at=start_epoch if resume else None, key="epoch")
    records = records_until(out / "log.jsonl", start_epoch, "epoch") if resume else []
    has_val = task_has_val(task)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if has_val and cfg.patience and best.get("epoch") is not None and epoch - best["epoch"] >= cfg.patience:
                logger.warning("early stop after epoch %d: no better validation score for %d epochs (best %.4f "
                               "at epoch %d)", epoch, cfg.patience, best["score"], best["epoch"])
                break
            started = time.perf_counter()
            model.train()
            if cfg.task == "phase" and getattr(cfg, "cache_features", False):
                model.backbone.eval()  # frozen: no dropout/drop-path noise in what the features mean
            losses = []
            bar = tqdm(task.train_batches(epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
            for i, batch in enumerate(bar):
                step = min(epoch * steps_per_epoch + i, len(factor) - 1)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * float(factor[step])
                loss = task.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            bar.close()
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                                      "lr": float(optimizer.param_groups[0]["lr"])}
            if has_val:
                model.eval()
                record.update({f"val_{k}": _plain(v) for k, v in task.validate(model).items() if k != "confusion"})
                score = record["val_score"]
            else:
                score = -record["train_loss"]  # without a validation set the lowest training loss wins
            record["seconds"] = round(time.perf_counter() - started, 1)
            if score > best["score"]:
                best = {"score": score, "epoch": epoch + 1, "class_names": model.class_names,
                        **{k: v for k, v in record.items() if k != "epoch"}}
                extra = {**card_extra, **(on_best(record) if on_best is not None else {})}
                model.save_pretrained(out / "best", card_extra=extra)
            log.write(record)
            records.append(record)
            tqdm.write(summary_line(record, model.class_names))
            plot_curves(records, out / PLOT_FILE, title=title)
            atomic_torch_save({"format": FINETUNE_FORMAT, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "best": best,
                               "rng": capture_rng(), "config": to_dict(cfg)}, out / LAST)
    finally:
        log.close()
    return best


def summary_line(record: dict[str, Any], class_names: list[str]) -> str:
    """One line per epoch: loss, score, and the per-class IoU / AP when there are any."""
    parts = [f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}" if record.get("train_loss")
             is not None else f"epoch {record['epoch']}"]
    for key in ("val_mean_iou", "val_mean_dice", "val_mAP", "val_accuracy", "val_macro_f1"):
        if isinstance(record.get(key), float):
            parts.append(f"{key[4:]} {record[key]:.3f}")
    per_class = record.get("val_iou") or record.get("val_ap")
    if isinstance(per_class, list) and len(per_class) == len(class_names):
        parts.append("(" + ", ".join(f"{n} {v:.2f}" for n, v in zip(class_names, per_class)) + ")")
    return " | ".join(parts[:1] + [", ".join(parts[1:])]) + f" [{record.get('seconds', 0):.0f} s]"


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python floats and lists (JSON logs, safe checkpoints)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


def task_has_val(task) -> bool:
    return bool(getattr(task, "val_set", None) is not None or getattr(task, "val_videos", None))


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"--resume found no {path}; drop --resume to start a new run.")
    return read_checkpoint_file(path, FINETUNE_FORMAT, "delete it and drop --resume to start over (OUT/best keeps "
                                "the best model so far)")
