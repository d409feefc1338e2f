"""Evaluation of a fine-tuned task model on a labelled dataset: metrics as JSON and a table, and
for segmentation a contact sheet (frame | ground truth | prediction).

* segmentation: per-class IoU and Dice and their means over the classes that occur (mIoU, mDice),
  scored at each frame's own size from one accumulated confusion matrix;
* cvs: per-criterion AP and balanced accuracy (labels ``c >= 0.5``), mAP;
* tools: per-tool AP and balanced accuracy, mAP;
* phase: accuracy and macro F1 per video (the model runs over each video in temporal order, as it
  would online), their means over the videos, and the accuracy over all frames pooled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..evaluation import metrics
from ..exceptions import InputError
from ..io.atomic import atomic_target, atomic_write_text
from ..tasks import MULTI_LABEL_TASKS

logger = logging.getLogger(__name__)

IGNORE_COLOUR = (96, 96, 96)


def evaluate_model(model, spec: str, out_dir: str | Path | None = None, batch_size: int = 8, workers: int = 0,
                   sheet_frames: int = 6) -> dict[str, Any]:
    """Score ``model`` (a surgenet task model) on the labelled dataset ``spec`` (``FORMAT:PATH`` or a path).

    With ``out_dir``: writes ``metrics.json``, ``metrics.md`` (the table), a figure (see
    :mod:`surgenet.evaluation.plots`: ``pr_curves.png``, ``phase_timeline.png`` or ``confusion.png``) and, for
    segmentation, ``contact_sheet.png`` with ``sheet_frames`` frames spread over the dataset.
    """
    from ..evaluation import plots as eval_plots
    from .. import create_transform
    from .data.labelled import LabelSamples, SegmentationSamples
    from .finetune_tasks import multilabel_scores, open_labelled, segmentation_scores

    task = model.task
    names = model.class_names
    source = open_labelled(spec, task)
    data_names = list(source.class_names)
    if task == "segmentation" and len(data_names) > model.num_classes and _inferred(data_names):
        # A layout without class names (ids inferred from the masks): the model's classes decide,
        # higher ids become 255 (ignore) with a warning, as in fine-tuning with --num-classes.
        source = open_labelled(spec, task, names)
        data_names = list(source.class_names)
    if (task == "segmentation" and len(data_names) > model.num_classes) or \
            (task != "segmentation" and len(data_names) != model.num_classes):
        raise InputError(f"the dataset has {len(data_names)} {task} classes ({', '.join(data_names)}) but the model "
                         f"{model.num_classes} ({', '.join(names)}); evaluate on data with the model's classes.")
    model.eval()
    transform = create_transform(model)
    result: dict[str, Any] = {"task": task, "data": str(spec), "frames": len(source), "class_names": names,
                              "backbone": model.config.get("backbone")}
    sheet: list[tuple[int, np.ndarray, np.ndarray]] = []
    if task == "segmentation":
        picks = set(np.linspace(0, len(source) - 1, min(sheet_frames, len(source))).round().astype(int).tolist()) \
            if sheet_frames > 0 else set()

        def keep(index: int, pred: np.ndarray, target: np.ndarray) -> None:
            if index in picks:
                sheet.append((index, pred.astype(np.uint8), target.astype(np.uint8)))

        scores = segmentation_scores(model, SegmentationSamples(source, transform), batch_size, workers, keep)
        result.update({k: scores[k] for k in ("mean_iou", "mean_dice", "iou", "dice", "confusion")})
    elif task in MULTI_LABEL_TASKS:
        scores = multilabel_scores(model, LabelSamples(source, transform), task, batch_size, workers,
                                   with_predictions=True)
        result.update({k: scores[k] for k in ("mAP", "ap", "mean_balanced_accuracy", "balanced_accuracy")})
    else:
        sequences: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        result.update(phase_scores(model, source.videos, transform, batch_size, sequences))
    if out_dir is not None:
        write_report(result, out_dir)
        title, figure = f"{task} on {spec} ({len(source)} frames)", Path(out_dir) / eval_plots.FIGURE_OF_TASK[task]
        if task == "segmentation":
            eval_plots.confusion_figure(np.asarray(result["confusion"]), names, figure, title)
        elif task in MULTI_LABEL_TASKS:
            eval_plots.pr_curves(scores["probabilities"], scores["targets"], names, figure, title=title)
        else:
            eval_plots.phase_timeline(sequences, names, figure, title)
        if sheet:
            contact_sheet([(source.paths[i], pred, target) for i, pred, target in sorted(sheet)], names,
                          Path(out_dir) / "contact_sheet.png")
    return result


def _inferred(names: Sequence[str]) -> bool:
    return all(n == f"class_{i}" for i, n in enumerate(names))


@torch.no_grad()
def phase_scores(model, videos: Sequence[Any], transform, batch_size: int = 32,
                 sequences: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Per-video accuracy and macro F1 of the phase model run over each whole video, and their means;
    ``sequences`` (if given) receives each video's (prediction, ground truth) per frame."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    per_video, correct, total = {}, 0, 0
    for video in tqdm(videos, desc="videos", unit="video", leave=False):
        feats = []
        for i in range(0, len(video.frames), batch_size):
            x = torch.stack([transform(p) for p in video.frames[i:i + batch_size]]).to(device)
            feats.append(model.embed(x).float())
        pred = model.forward_temporal(torch.cat(feats)[None])[0].argmax(-1).cpu().numpy()
        target = np.asarray(video.phases)
        if sequences is not None:
            sequences[video.name] = (pred, target)
        m = metrics.phase_metrics(pred, target, model.num_classes)
        per_video[video.name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "frames": int(len(target))}
        correct += int((pred == target).sum())
        total += int(len(target))
    accs = [v["accuracy"] for v in per_video.values()]
    f1s = [v["macro_f1"] for v in per_video.values()]
    return {"accuracy": float(np.mean(accs)), "macro_f1": float(np.nanmean(f1s)),
            "frame_accuracy": correct / max(total, 1), "videos": per_video}


def table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The headline metrics and the per-class ones as a table (header, rows)."""
    task, names = result["task"], result["class_names"]
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"  # noqa: E731
    if task == "segmentation":
        rows = [[n, fmt(i), fmt(d)] for n, i, d in zip(names, result["iou"], result["dice"])]
        rows.append(["mean", fmt(result["mean_iou"]), fmt(result["mean_dice"])])
        return ["class", "IoU", "Dice"], rows
    if task in MULTI_LABEL_TASKS:
        rows = [[n, fmt(a), fmt(b)] for n, a, b in zip(names, result["ap"], result["balanced_accuracy"])]
        rows.append(["mean", fmt(result["mAP"]), fmt(result["mean_balanced_accuracy"])])
        return ["criterion" if task == "cvs" else "tool", "AP", "balanced accuracy"], rows
    rows = [[name, str(v["frames"]), fmt(v["accuracy"]), fmt(v["macro_f1"])] for name, v in result["videos"].items()]
    rows.append(["mean over videos", str(sum(v["frames"] for v in result["videos"].values())),
                 fmt(result["accuracy"]), fmt(result["macro_f1"])])
    return ["video", "frames", "accuracy", "macro F1"], rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(result: dict[str, Any], out_dir: str | Path) -> None:
    """``metrics.json`` (NaN written as null) and ``metrics.md`` (the table)."""
    out = Path(out_dir)
    atomic_write_text(out / "metrics.json", json.dumps(_json_safe(result), indent=2) + "\n")
    header, rows = table_rows(result)
    atomic_write_text(out / "metrics.md", f"{result['task']} on {result['data']} ({result['frames']} frames)\n\n"
                      + markdown_table(header, rows))


def _colour_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    from ..results import palette

    colours = np.concatenate([palette(num_classes), np.zeros((256 - num_classes, 3), np.uint8)])
    out = colours[mask]
    out[mask == 255] = IGNORE_COLOUR
    return out


def _blend(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.55) -> np.ndarray:
    colours = _colour_mask(mask, num_classes).astype(np.float32)
    base = image.astype(np.float32)
    out = np.where((mask == 0)[..., None], base, (1 - alpha) * base + alpha * colours)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def contact_sheet(items: Sequence[tuple[Path, np.ndarray, np.ndarray]], class_names: Sequence[str],
                  path: str | Path, width: int = 320) -> Path:
    """One row per frame: the frame, its ground truth and the prediction blended over it (class 0
    left clear, ignored pixels grey), with a legend of the class colours below."""
    from PIL import Image, ImageDraw

    from ..results import palette
    from .formats.base import load_rgb

    n = len(class_names)
    rows = []
    for image_path, pred, target in items:
        image = np.asarray(load_rgb(Path(image_path)))
        if image.shape[:2] != pred.shape:
            image = np.asarray(Image.fromarray(image).resize(pred.shape[::-1], Image.Resampling.BILINEAR))
        panels = [image, _blend(image, target, n), _blend(image, pred, n)]
        height = round(width * image.shape[0] / image.shape[1])
        rows.append([Image.fromarray(p).resize((width, height), Image.Resampling.NEAREST) for p in panels])
    title_h, legend_h, gap = 20, 22, 4
    total_h = title_h + sum(r[0].height + gap for r in rows) + legend_h
    sheet = Image.new("RGB", (3 * width + 2 * gap, total_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(("frame", "ground truth", "prediction")):
        draw.text((j * (width + gap) + 4, 4), title, fill=(0, 0, 0))
    y = title_h
    for row in rows:
        for j, panel in enumerate(row):
            sheet.paste(panel, (j * (width + gap), y))
        y += row[0].height + gap
    x = 4
    colours = palette(n)
    for i, name in enumerate(class_names[1:], start=1):
        draw.rectangle([x, y + 5, x + 12, y + 17], fill=tuple(int(c) for c in colours[i]))
        draw.text((x + 16, y + 5), name, fill=(0, 0, 0))
        x += 22 + 6 * len(name)
    path = Path(path)
    with atomic_target(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
