"""The model side of an archive job: which model, how it is built, and the per-batch function.

``BatchModel`` is the callable class that both engines run: the local engine calls it in the
process, Ray Data runs it in an actor pool (``map_batches``). It is built once per process from a
picklable :class:`ModelSpec` and maps a batch of preprocessed frames (a dict of numpy arrays) to
model outputs, so one code path serves both schedulers.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import runs_eager
from ..exceptions import InputError
from ..runtime.registry import REFERENCE, open_runner
from ..tasks import MULTI_LABEL_TASKS, TASKS

MODES = (*TASKS, "embed")


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model, as ``surgenet predict`` takes it (picklable, for Ray workers)."""

    model: str  # zoo name or saved folder
    mode: str  # a task, or "embed" for backbone embeddings
    num_classes: int | None = None
    weights: str | None = None
    pretrained: bool = True
    device: str = "cpu"
    backend: str = REFERENCE  # a PyTorch backend of the registry (segmentation, CVS, tools: any of them)

    def build(self):
        """The network: a task model, or for ``embed`` a backbone / a saved model's backbone.

        Random weights (``pretrained=False``) are drawn from a fixed seed, so every worker of a
        job, and every engine, builds the same network.
        """
        import torch

        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            torch.manual_seed(0)
            return self._build()

    def _build(self):
        from ..models import load_model
        from ..models.loading import model_source

        if self.mode == "embed":
            if model_source(self.model) == "zoo":
                from ..zoo.factory import load_backbone

                return load_backbone(self.model, pretrained=self.pretrained, weights=self.weights).eval()
            return load_model(self.model).eval()
        task = None if model_source(self.model) != "zoo" else self.mode
        model = load_model(self.model, task=task, num_classes=self.num_classes, pretrained=self.pretrained,
                           weights=self.weights)
        if model.task != self.mode:
            raise InputError(f"{self.model} is a {model.task} model, not {self.mode}; pass --task {model.task}.")
        return model.eval()

    def fingerprint(self) -> str:
        """Changes when the model or its weights change: a done video is redone with another model."""
        facts = asdict(self)
        facts.pop("device")
        if facts["backend"] == REFERENCE:  # the fingerprints of jobs run before backends were chosen stay
            facts.pop("backend")
        for key in ("model", "weights"):
            path = Path(facts[key]).expanduser() if facts[key] else None
            if path is not None and path.exists():
                files = sorted(path.rglob("*")) if path.is_dir() else [path]
                facts[f"{key}_files"] = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _png(class_map: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(class_map).save(buffer, format="PNG")
    return buffer.getvalue()


class BatchModel:
    """The per-batch function: ``{"pixels", "height", "width", "marker", ...} -> outputs``.

    Output columns added: ``values`` (float32 (N, K): class shares, probabilities, or embeddings
    for phase and embed; NaN on marker rows) and ``png`` (segmentation class maps at each frame's
    own size, PNG bytes; empty otherwise). ``pixels`` is dropped: it never travels back.
    """

    def __init__(self, spec: ModelSpec, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.spec = spec
        self.model = spec.build().to(spec.device)
        self.width = self._output_width()
        self.runner = None  # a registry runner of the model when the backend is not the eager model
        if not runs_eager(spec.backend):
            if spec.mode in ("phase", "embed"):
                raise InputError(f"--backend {spec.backend} runs a model's logits; {spec.mode} outputs embeddings, "
                                 "which the eager model gives: drop --backend.")
            self.runner = open_runner(spec.backend, self.model, device=spec.device if spec.device != "cpu" else None)

    def _output_width(self) -> int:
        from ..postprocess import label_count

        if self.spec.mode in ("phase", "embed"):
            return int(getattr(self.model, "embed_dim", 0) or self.model.backbone.embed_dim)
        if self.spec.mode in MULTI_LABEL_TASKS:
            return int(self.model.num_classes)
        return label_count(self.model.num_classes)  # segmentation: a binary model labels two classes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from ..postprocess import class_shares, label_probabilities, segmentation_labels

        markers = np.asarray(batch["marker"], dtype=bool)
        n = len(markers)
        values = np.full((n, self.width), np.nan, dtype=np.float32)
        pngs = np.array([b""] * n, dtype=object)
        real = np.flatnonzero(~markers)
        if len(real):
            x = torch.from_numpy(np.ascontiguousarray(np.stack([batch["pixels"][i] for i in real]))).to(self.spec.device)
            with torch.inference_mode():
                if self.spec.mode == "embed":
                    embed = getattr(self.model, "forward_embedding", None) or self.model.embed
                    values[real] = embed(x).float().cpu().numpy()
                elif self.spec.mode == "phase":
                    values[real] = self.model.embed(x).float().cpu().numpy()
                elif self.spec.mode in MULTI_LABEL_TASKS:
                    values[real] = label_probabilities(self._logits(x), self.spec.mode)
                else:
                    logits = self._logits(x)
                    for j, i in enumerate(real):
                        size = (int(batch["height"][i]), int(batch["width"][i]))
                        class_map = segmentation_labels(logits[j], size)
                        values[i] = class_shares(class_map, logits.shape[1])
                        pngs[i] = _png(class_map)
        out = {key: np.asarray(value) for key, value in batch.items() if key != "pixels"}
        out["values"], out["png"] = values, pngs
        return out


    def _logits(self, x):
        """The model's float32 logits of a batch: the eager model, or the backend's runner."""
        import torch

        if self.runner is None:
            return self.model(x).float()
        return torch.from_numpy(np.asarray(self.runner(x.cpu().numpy()), dtype=np.float32))


def model_metadata(spec: ModelSpec, model: Any, transform_config: dict[str, Any]) -> dict[str, Any]:
    """What the Parquet files record about the model and its preprocessing."""
    from .._version import __version__

    config = dict(getattr(model, "config", {}) or {})
    return {"surgenet_version": __version__, "model": spec.model, "mode": spec.mode, "weights": spec.weights or "",
            "pretrained": spec.pretrained, "task": config.get("task", spec.mode),
            "class_names": config.get("class_names", []), "backbone": config.get("backbone", spec.model),
            "preprocessing": transform_config, "model_fingerprint": spec.fingerprint()}
