"""kNN and linear-probe evaluation of a frozen backbone on labelled frames.

A labelled frame set is either a folder with one sub-folder of images per class, or a CSV with
columns ``image,label`` (paths relative to the CSV's folder; labels are names or integers).
Images go through the preprocessing every surgenet model uses
(:class:`surgenet.transforms.ImageTransform`: resized to ``image_size`` x ``image_size``,
normalised); the backbone's pooled embedding is the feature. :func:`probe_evaluate` extracts the
features once, whatever the methods asked for.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..exceptions import InputError
from ..io.images import IMAGE_EXTENSIONS
from ..io.text import read_user_text
from ..transforms import ImageTransform

EVAL_METHODS = ("knn", "linear", "both")  # what probe_evaluate runs: a kNN classifier, a linear probe, or both


@dataclass
class LabelledFrames:
    paths: list[str]
    labels: np.ndarray  # int64 class indices
    classes: list[str]


def read_labelled(path: str | Path, classes: Sequence[str] | None = None) -> LabelledFrames:
    """A class-folder tree or an ``image,label`` CSV; ``classes`` fixes the label order (for a val set)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a folder of class folders or an image,label CSV.")
    if path.is_dir():
        pairs = [(str(f), d.name) for d in sorted(p for p in path.iterdir() if p.is_dir())
                 for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_EXTENSIONS]
    elif path.suffix.lower() == ".csv":
        with io.StringIO(read_user_text(path), newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"image", "label"} <= set(rows[0]):
            raise InputError(f"{path} needs the columns image,label (one row per frame).")
        pairs = [(str(path.parent / r["image"]), r["label"].strip()) for r in rows]
        missing = [p for p, _ in pairs if not Path(p).is_file()]
        if missing:
            raise InputError(f"{path} lists {len(missing)} image(s) that do not exist, e.g. {missing[0]}; image "
                             "paths are relative to the CSV's folder.")
    else:
        raise InputError(f"{path} is neither a folder of class folders nor an image,label CSV.")
    if not pairs:
        raise InputError(f"{path} holds no labelled images.")
    names = list(classes) if classes is not None else sorted({label for _, label in pairs},
                                                             key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({label for _, label in pairs} - set(index))
    if unknown:
        raise InputError(f"{path} has labels {unknown[:5]} that the training set does not have.")
    return LabelledFrames([p for p, _ in pairs], np.array([index[label] for _, label in pairs]), names)


@torch.no_grad()
def extract_features(backbone: nn.Module, paths: Sequence[str], image_size: int = 224,
                     mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                     batch_size: int = 64) -> torch.Tensor:
    """Pooled embeddings ``(N, C)`` of the images at ``paths`` (float32, on the CPU)."""
    from tqdm.auto import tqdm

    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    transform = ImageTransform((image_size, image_size), mean, std)
    out = []
    try:
        for start in tqdm(range(0, len(paths), batch_size), desc="features", unit="batch", leave=False,
                          disable=len(paths) <= batch_size):
            batch = transform.batch(paths[start:start + batch_size])
            out.append(backbone.forward_embedding(batch.to(device)).float().cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(out)


def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 num_classes: int, k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """Weighted kNN on cosine similarity (DINO's protocol): neighbour ``j`` votes ``exp(sim_j / T)``."""
    train = F.normalize(train_features, dim=1)
    test = F.normalize(test_features, dim=1)
    k = min(k, len(train))
    sims, idx = (test @ train.T).topk(k, dim=1)
    votes = torch.zeros(len(test), num_classes)
    votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())
    return votes.argmax(dim=1)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 num_classes: int, epochs: int = 200, lr: float = 0.01, weight_decay: float = 1e-4,
                 seed: int = 0) -> torch.Tensor:
    """A linear classifier on frozen, standardised features (full-batch AdamW); test predictions."""
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x, xt = (train_features - mean) / std, (test_features - mean) / std
    generator = torch.Generator().manual_seed(seed)
    # nn.Linear's default init draws from the global RNG; the probe runs inside training loops
    # (periodic evaluation), where that draw would shift the run's own random stream.
    with torch.random.fork_rng(devices=[]):
        layer = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        F.cross_entropy(layer(x), train_labels).backward()
        optimizer.step()
    with torch.no_grad():
        return layer(xt).argmax(dim=1)


def accuracy_report(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Top-1 accuracy and balanced accuracy (mean per-class recall over classes present)."""
    recalls = [float((pred[target == c] == c).float().mean()) for c in range(num_classes) if (target == c).any()]
    return {"top1": float((pred == target).float().mean()), "balanced_accuracy": float(np.mean(recalls))}


def _features(backbone, train, val, image_size, mean, std):
    train_set = read_labelled(train)
    val_set = read_labelled(val, classes=train_set.classes)
    f_train = extract_features(backbone, train_set.paths, image_size, mean, std)
    f_val = extract_features(backbone, val_set.paths, image_size, mean, std)
    return train_set, val_set, f_train, f_val


def probe_evaluate(backbone: nn.Module, train: str | Path, val: str | Path, method: str = "both",
                   image_size: int = 224, k: int = 20, temperature: float = 0.07, linear_epochs: int = 200,
                   linear_lr: float = 0.01, mean: Sequence[float] = (0.485, 0.456, 0.406),
                   std: Sequence[float] = (0.229, 0.224, 0.225)) -> dict[str, dict[str, float]]:
    """``{"knn": ..., "linear": ...}`` accuracies (those ``method`` names: knn, linear or both);
    the features are extracted once for both."""
    if method not in EVAL_METHODS:
        raise InputError(f"evaluation method must be one of {', '.join(EVAL_METHODS)}, not {method!r}.")
    train_set, val_set, f_train, f_val = _features(backbone, train, val, image_size, mean, std)
    n = len(train_set.classes)
    y_train, y_val = torch.from_numpy(train_set.labels), torch.from_numpy(val_set.labels)
    results = {}
    if method in ("knn", "both"):
        results["knn"] = accuracy_report(knn_classify(f_train, y_train, f_val, n, k, temperature), y_val, n)
    if method in ("linear", "both"):
        pred = linear_probe(f_train, y_train, f_val, n, linear_epochs, linear_lr)
        results["linear"] = accuracy_report(pred, y_val, n)
    return results


def knn_evaluate(backbone: nn.Module, train: str | Path, val: str | Path, image_size: int = 224, k: int = 20,
                 temperature: float = 0.07, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225)) -> dict[str, float]:
    """kNN accuracy of ``backbone`` features: neighbours from ``train``, scored on ``val``."""
    return probe_evaluate(backbone, train, val, "knn", image_size, k=k, temperature=temperature,
                          mean=mean, std=std)["knn"]


def linear_evaluate(backbone: nn.Module, train: str | Path, val: str | Path, image_size: int = 224,
                    epochs: int = 200, lr: float = 0.01, mean: Sequence[float] = (0.485, 0.456, 0.406),
                    std: Sequence[float] = (0.229, 0.224, 0.225)) -> dict[str, float]:
    """Linear-probe accuracy of ``backbone`` features: trained on ``train``, scored on ``val``."""
    return probe_evaluate(backbone, train, val, "linear", image_size, linear_epochs=epochs, linear_lr=lr,
                          mean=mean, std=std)["linear"]
