"""The model side of an archive job: which model, how it is built, and the per-batch function.

``BatchModel`` is the callable class that both engines run: the local engine calls it in the
process, Ray Data runs it in an actor pool (``map_batches``). It is built once per process from a
picklable :class:`ModelSpec` and maps a batch of preprocessed frames (a dict of numpy arrays) to
model outputs, so one code path serves both schedulers.

A ``surgenet-export`` folder (segmentation, CVS, tools) runs on a backend of the registry. Its
default is :data:`~surgenet.backends.AUTO`, which the job resolves once, in the driver
(:func:`resolve_backend`), before any input is decoded: every worker opens the backend chosen
there and none of them measures anything.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import AUTO, check_backend, is_export_folder, runs_eager
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
    # A backend of the registry: for a PyTorch model one of its PyTorch backends (segmentation, CVS,
    # tools: any of them; default torch-eager-fp32); for an export folder one that runs its files, or
    # AUTO (the default), resolved once by the job's driver. None: that default.
    backend: str | None = None

    def __post_init__(self) -> None:
        backend = check_backend(self.model, self.backend)  # a name that cannot run this model: one line now
        object.__setattr__(self, "backend", backend)
        if self.exported and self.mode in ("phase", "embed"):
            what = ("phase models run their causal temporal part over each video's embeddings, which an "
                    "exported graph does not give" if self.mode == "phase" else
                    "embed outputs backbone embeddings, which an exported model does not give")
            raise InputError(f"{self.model} is an exported model, and {what}; pass the PyTorch model "
                             "(a save_pretrained folder or a zoo name).")

    @property
    def exported(self) -> bool:
        """The model is a ``surgenet-export`` folder (run by a backend of the registry, not PyTorch)."""
        return is_export_folder(self.model)

    def export_config(self) -> dict[str, Any]:
        """The config an export folder carries (task, classes, preprocessing), read without a runtime."""
        from ..runtime.metadata import read_export_config

        return read_export_config(self.model)

    def preprocessing(self) -> dict[str, Any]:
        """``mean``, ``std`` and ``input_size`` of the frames the model takes (picklable, for Ray tasks)."""
        from ..transforms import create_transform

        transform = create_transform(self.export_config() if self.exported else self.model)
        return {"mean": list(transform.mean), "std": list(transform.std), "input_size": [3, *transform.size]}

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


def resolve_backend(spec: ModelSpec, *, frames_dir: str | Path | None = None, threads: int | None = None,
                    refresh: bool = False) -> tuple[ModelSpec, Any]:
    """``spec`` with :data:`~surgenet.backends.AUTO` replaced by the backend chosen for this machine
    (:func:`surgenet.runtime.auto.select_backend`: cached, or measured now with ``threads`` CPU
    threads, as the workers will run), and the :class:`~surgenet.runtime.auto.Choice`; a spec with
    a named backend comes back as it is, with None."""
    if spec.backend != AUTO:
        return spec, None
    from dataclasses import replace

    from ..runtime import auto

    choice = auto.select_backend(spec.model, frames_dir=frames_dir, threads=threads, device=spec.device,
                                 refresh=refresh)
    return replace(spec, backend=choice.backend), choice


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
        self.runner = None  # a registry runner of the model when the backend is not the eager model
        if spec.exported:
            if spec.backend == AUTO:
                raise InputError("the backend of an export folder is chosen once by the job (resolve_backend), "
                                 "not by each worker; pass a spec with a named backend.")
            from ..runtime.auto import device_for

            self.model = None
            self.runner = open_runner(spec.backend, spec.model, device=device_for(spec.backend, spec.device),
                                      threads=threads)
            self.config = dict(self.runner.config)
            self.width = self._output_width()
            return
        self.model = spec.build().to(spec.device)
        self.config = dict(getattr(self.model, "config", {}) or {})
        self.width = self._output_width()
        if not runs_eager(spec.backend):
            if spec.mode in ("phase", "embed"):
                raise InputError(f"--backend {spec.backend} runs a model's logits; {spec.mode} outputs embeddings, "
                                 "which the eager model gives: drop --backend.")
            self.runner = open_runner(spec.backend, self.model, device=spec.device if spec.device != "cpu" else None)

    def _output_width(self) -> int:
        from ..postprocess import label_count

        if self.model is None:  # an exported model: its config says how many classes
            count = int(self.config["num_classes"])
            return count if self.spec.mode in MULTI_LABEL_TASKS else label_count(count)
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
            x = torch.from_numpy(np.ascontiguousarray(np.stack([batch["pixels"][i] for i in real])))
            if self.runner is None:  # a runner takes numpy on the host and holds its own device
                x = x.to(self.spec.device)
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


def model_metadata(spec: ModelSpec, config: dict[str, Any] | None, transform_config: dict[str, Any],
                   choice: Any = None) -> dict[str, Any]:
    """What the Parquet files record about the model, the backend that ran it (with ``choice``, how
    ``--backend auto`` picked it) and its preprocessing."""
    from .._version import __version__

    config = dict(config or {})
    return {"surgenet_version": __version__, "model": spec.model, "mode": spec.mode, "weights": spec.weights or "",
            "pretrained": spec.pretrained, "task": config.get("task", spec.mode),
            "class_names": config.get("class_names", []), "backbone": config.get("backbone", spec.model),
            "backend": spec.backend, "backend_auto": choice.summary() if choice is not None else "",
            "preprocessing": transform_config, "model_fingerprint": spec.fingerprint()}
