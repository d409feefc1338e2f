"""Fine-tuning of the task heads: ``surgenet-train finetune --task segmentation|phase|cvs``.

Dataset formats (see :mod:`surgenet.train.data.labelled`):

* segmentation: ``DIR/images/*`` and ``DIR/masks/<stem>.png`` (class index per pixel, 255 ignore);
* phase: a folder of per-video CSVs ``frame,phase`` (paths relative to the CSV), or one CSV;
* cvs: a CSV ``image,c1,c2,c3`` (probabilities or 0/1).

Each epoch ends with validation (``surgenet.metrics``); the best model is written with
``save_pretrained`` to ``OUT/best`` (load it with ``surgenet.load_model(OUT/best)``), the latest
training state to ``OUT/last.pth`` (``--resume``), and every epoch's metrics to ``OUT/log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import InputError
from .checkpointing import atomic_torch_save, capture_rng, load_checkpoint, restore_rng
from .config import dump_yaml, load_config, to_dict
from .dino.schedules import cosine_schedule
from .runlog import MetricLog

logger = logging.getLogger(__name__)

LAST = "last.pth"


@dataclass
class FinetuneConfig:
    task: str = "segmentation"
    model: str = "surgenetxl-caformer"  # zoo name: the backbone
    weights: str | None = None  # backbone (or task model) weights; null: the released ones
    pretrained: bool = True  # false: random backbone (for tests and ablations)
    num_classes: int | None = None
    class_names: list[str] | None = None
    train: str = ""
    val: str | None = None
    image_size: int | None = None  # null: the zoo entry's input size
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3  # task layers
    backbone_lr: float = 1e-4  # backbone (0 freezes it)
    weight_decay: float = 1e-4
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"
    # phase only
    cache_features: bool = True  # train the temporal model on frozen per-frame embeddings
    clip_length: int = 16  # end to end: frames per training clip
    temporal: str = "tcn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: FinetuneConfig):
    from ..models import load_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.image_size:
        kwargs.setdefault("input_size", [3, cfg.image_size, cfg.image_size])
    if cfg.class_names:
        kwargs.setdefault("class_names", list(cfg.class_names))
    if cfg.task == "phase":
        kwargs.setdefault("temporal", cfg.temporal)
    num_classes = cfg.num_classes or (len(cfg.class_names) if cfg.class_names else None)
    return load_model(cfg.model, task=cfg.task, num_classes=num_classes, pretrained=cfg.pretrained and not cfg.weights,
                      weights=cfg.weights, **kwargs)


def _optimizer(model, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    ids = {id(p) for p in model.backbone.parameters()}
    task = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    groups = [{"params": task, "lr": cfg.lr, "base_lr": cfg.lr}]
    if cfg.backbone_lr > 0 and backbone:
        groups.append({"params": backbone, "lr": cfg.backbone_lr, "base_lr": cfg.backbone_lr})
    else:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def finetune(cfg: FinetuneConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg.task``'s model; returns the best validation metrics (``score`` and the rest)."""
    from .. import create_transform
    from .distributed import resolve_device
    from .finetune_tasks import TASKS

    if cfg.task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}, not {cfg.task!r}.")
    if not cfg.train:
        raise InputError("pass --train (the training set; formats: surgenet-train finetune --help).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _seed(cfg.seed)
    model = build_model(cfg).train()
    device = resolve_device(cfg.device)
    model.to(device)
    transform = create_transform(model)
    task = TASKS[cfg.task](cfg, transform, transform.size)
    if cfg.task == "phase":
        task.prepare(model, out / "features")
        model.train()
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = max(1, len(task.train_batches(0)))
    factor = cosine_schedule(1.0, 0.01, cfg.epochs, steps_per_epoch)  # cosine to 1% of each lr
    start_epoch, best = 0, {"score": -float("inf")}
    if resume:
        state = load_checkpoint_state(out / LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best = state["epoch"], state["best"]
        restore_rng(state["rng"])
    (out / "config.yaml").write_text(dump_yaml(cfg))
    # Resumed: keep the epochs up to last.pth's; any later one was logged by the killed run and runs again.
    log = MetricLog(out / "log.jsonl", resume_at=start_epoch if resume else None, key="epoch")
    try:
        from tqdm.auto import tqdm

        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            if cfg.task == "phase" and cfg.cache_features:
                model.backbone.eval()  # frozen: no dropout/drop-path noise in what the features mean
            losses = []
            bar = tqdm(task.train_batches(epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
            for i, batch in enumerate(bar):
                step = min(epoch * steps_per_epoch + i, len(factor) - 1)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * float(factor[step])
                loss = task.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{loss.item():.4f}")
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None}
            if task_has_val(task):
                model.eval()
                record.update({f"val_{k}": _plain(v) for k, v in task.validate(model).items()})
                score = record["val_score"]
            else:
                score = -record["train_loss"]  # without a validation set the lowest training loss wins
            if score > best["score"]:
                best = {"score": score, "epoch": epoch + 1, **{k: v for k, v in record.items() if k != "epoch"}}
                model.save_pretrained(out / "best", card_extra={"fine_tuned": to_dict(cfg)})
            log.write(record)
            logger.info("epoch %d: %s", epoch + 1, record)
            atomic_torch_save({"format": "surgenet-finetune/1", "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "best": best,
                               "rng": capture_rng(), "config": to_dict(cfg)}, out / LAST)
    finally:
        log.close()
    return best


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
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != "surgenet-finetune/1":
        load_checkpoint(path)  # raises the checkpoint error with its explanation
    return state


FINETUNE_HELP = __doc__.split("\n\n", 1)[1]


def cmd_finetune(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    for key in ("task", "model", "weights", "num_classes", "train", "val", "image_size", "epochs", "batch_size",
                "lr", "backbone_lr", "clip_length", "temporal", "device", "num_workers"):
        value = getattr(args, key, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.class_names:
        overrides.append("class_names=" + json.dumps(args.class_names.split(",")))
    if args.no_pretrained:
        overrides.append("pretrained=false")
    if args.end_to_end:
        overrides.append("cache_features=false")
    cfg = load_config(args.config, overrides, cls=FinetuneConfig)
    best = finetune(cfg, args.out, resume=args.resume)
    print(json.dumps({k: v for k, v in best.items()}, indent=2, default=float))
    print(f"best model: {Path(args.out) / 'best'} (surgenet.load_model(PATH))")
    return 0


def register(sub) -> None:
    p = sub.add_parser("finetune", help="train a segmentation, phase or CVS head on labelled data",
                       description=FINETUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=("segmentation", "phase", "cvs"))
    p.add_argument("--model", required=True, help="zoo name of the backbone (surgenet list)")
    p.add_argument("--train", required=True, help="training set (format of the task, above)")
    p.add_argument("--val", help="validation set, same format; picks the best checkpoint")
    p.add_argument("--out", required=True, help="output folder (best/, last.pth, log.jsonl)")
    p.add_argument("--weights", help="backbone weights instead of the released ones (e.g. RUN/teacher)")
    p.add_argument("--no-pretrained", action="store_true", help="start from a random backbone")
    p.add_argument("--num-classes", type=int, help="classes (segmentation) or phases (phase)")
    p.add_argument("--class-names", help="comma-separated names (phase CSVs may then use names)")
    p.add_argument("--image-size", type=int, help="training size (default: the model's input size)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate of the task layers")
    p.add_argument("--backbone-lr", type=float, help="learning rate of the backbone; 0 freezes it")
    p.add_argument("--end-to-end", action="store_true", help="phase: train backbone and temporal model on clips")
    p.add_argument("--clip-length", type=int, help="phase end to end: frames per clip")
    p.add_argument("--temporal", choices=("tcn", "lstm"), help="phase: temporal model")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--config", help="a YAML file of FinetuneConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    p.set_defaults(func=cmd_finetune)
