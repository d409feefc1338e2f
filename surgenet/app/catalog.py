"""Which models the web demo offers, per task, and their predictors (loaded once, on first use).

A source is a zoo name (its backbone with freshly initialised task layers for segmentation, CVS,
phase and tools: fine for trying the app, meaningless as predictions, and the page says so), a folder
written by ``save_pretrained`` / ``surgenet-train finetune`` (one task, trained), or an output
folder of ``surgenet-export`` (the ONNX Runtime and OpenVINO backends of :mod:`surgenet.runtime`, when
the export extra is installed). Backends are names of the one registry. Every source is checked when
the catalog is built, before the server starts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..exceptions import InputError, SurgeNetError
from ..io.text import read_user_text
from ..label_sets import CHOLEC80_PHASES, CHOLEC80_TOOLS, ENDOSCAPES_CLASSES
from ..models.loading import model_source
from ..predict import Predictor
from ..zoo.registry import get_entry
from ..runtime.registry import REFERENCE, open_runner, unavailable_reason
from ..tasks import MULTI_LABEL_TASKS

# Segmentation and phase have their own displays; every multi-label task (CVS, tools, ...) shares one:
# probabilities per label and the labels at the predictor's threshold.
APP_TASKS: tuple[str, ...] = ("segmentation", "phase", *MULTI_LABEL_TASKS)
# What a zoo backbone gets as task layers in the demo: the label sets of the bundled real frames
# (segmentation, CVS) and of Cholec80 (phase, tools).
ZOO_TASK_SETUP = {"segmentation": (len(ENDOSCAPES_CLASSES), list(ENDOSCAPES_CLASSES)),
                  "cvs": (3, None),
                  "phase": (len(CHOLEC80_PHASES), list(CHOLEC80_PHASES)),
                  "tools": (len(CHOLEC80_TOOLS), list(CHOLEC80_TOOLS))}
EXPORT_BACKENDS = ("onnxruntime-cpu", "openvino-f32")  # what an export folder is offered with


@dataclass(frozen=True)
class ModelChoice:
    """One entry of a model menu: a source served by one backend for one task."""

    label: str
    task: str
    source: str
    backend: str  # a registry name: REFERENCE (PyTorch on the catalog's device) or one of EXPORT_BACKENDS
    licence: str
    trained: bool  # task layers fine-tuned (a saved folder) or random (a zoo backbone)


def _licence_of(name: str | None) -> str:
    if not name:
        return "unknown (not a zoo backbone: see the model's own card)"
    try:
        return get_entry(name).license
    except SurgeNetError:
        return "unknown (not a zoo backbone: see the model's own card)"


def _read_config(folder: Path) -> dict:
    from ..models.base import check_saved_numbers

    try:
        config = json.loads(read_user_text(folder / "config.json"))
    except (OSError, ValueError) as exc:  # InputError (missing, not UTF-8) is a ValueError
        raise InputError(f"{folder}/config.json cannot be read ({exc}); pass a folder written by "
                         "save_pretrained or surgenet-train.") from exc
    if isinstance(config, dict):
        check_saved_numbers(config, folder / "config.json")
    return config


def _export_sidecar(folder: Path) -> dict | None:
    """The metadata JSON that ``surgenet-export`` writes beside ``model.onnx``, if any."""
    if not (folder / "model.onnx").is_file():
        return None
    for candidate in sorted(folder.glob("*.json")):
        try:
            data = json.loads(read_user_text(candidate))
        except (OSError, ValueError):  # InputError (not UTF-8) is a ValueError: not the sidecar
            continue
        if isinstance(data, dict) and "task" in data:
            return data
    return {}


def _unshown(folder: Path, task: object) -> str:
    return (f"{folder}: task {task!r} is not one the app shows; pass a model of one of these tasks: "
            f"{', '.join(APP_TASKS)}.")


def _choices_for(source: str, pretrained: bool) -> list[ModelChoice]:
    kind = model_source(source)
    if kind == "zoo":
        entry = get_entry(source)
        note = "random backbone, untrained task layers" if not pretrained else "untrained task layers"
        return [ModelChoice(f"{entry.name} ({task}: {note})", task, entry.name, REFERENCE, entry.license, False)
                for task in APP_TASKS if task in ZOO_TASK_SETUP]
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise InputError(f"{source} is not a folder on this machine; the app takes zoo names, save_pretrained "
                         "folders and surgenet-export folders (Hub repos: download them first).")
    sidecar = _export_sidecar(folder)
    if sidecar is not None:
        task = sidecar.get("task") or (sidecar.get("config") or {}).get("task")
        if task not in APP_TASKS:
            raise InputError(_unshown(folder, task))
        missing = [why for why in map(unavailable_reason, EXPORT_BACKENDS) if why]
        if len(missing) == len(EXPORT_BACKENDS):
            raise InputError(f"{folder} is an exported model; running it needs the export extra: "
                             f'pip install "surgenet[export]" ({missing[0]}).')
        licence = sidecar.get("license") or _licence_of(sidecar.get("backbone") or sidecar.get("model"))
        return [ModelChoice(f"{folder.name} ({task}, {backend})", task, str(folder), backend, licence, True)
                for backend in EXPORT_BACKENDS if unavailable_reason(backend) is None]
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} holds neither config.json (save_pretrained) nor model.onnx (surgenet-export).")
    config = _read_config(folder)
    task = config.get("task")
    if task not in APP_TASKS:
        raise InputError(_unshown(folder, task))
    licence = config.get("license") or _licence_of(config.get("backbone"))
    return [ModelChoice(f"{folder.name} ({task}, fine-tuned)", task, str(folder), REFERENCE, licence, True)]


class ModelCatalog:
    """The models of the demo, grouped by task, each loaded on first use and then kept.

    Args:
        sources: zoo names and folders (see the module docstring).
        pretrained: load the released backbone weights of zoo names (False: random, no download).
        device: where PyTorch models run.
        threshold: the probability at which a CVS criterion counts as met and a tool as present.
    """

    def __init__(self, sources: Sequence[str], pretrained: bool = True, device: str = "cpu",
                 threshold: float = 0.5) -> None:
        if not sources:
            raise InputError("give at least one model: a zoo name (surgenet list) or a fine-tuned folder.")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be a probability between 0 and 1, got {threshold}.")
        self.pretrained, self.device, self.threshold = pretrained, device, float(threshold)
        self._choices: list[ModelChoice] = []
        for source in sources:
            for choice in _choices_for(str(source), pretrained):
                if choice.label not in {c.label for c in self._choices}:
                    self._choices.append(choice)
        self._predictors: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def choices(self, task: str) -> list[ModelChoice]:
        """The menu of one task, fine-tuned models first."""
        return sorted((c for c in self._choices if c.task == task), key=lambda c: not c.trained)

    def get(self, label: str) -> ModelChoice:
        for choice in self._choices:
            if choice.label == label:
                return choice
        raise InputError(f"no model {label!r} in this app; choose one of the menu.")

    def predictor(self, label: str) -> Predictor:
        """The choice's predictor, loaded once (requests from several browser tabs share it)."""
        with self._lock:
            if label not in self._predictors:
                self._predictors[label] = self._load(self.get(label))
            return self._predictors[label]

    def warm_up(self) -> None:
        """Load the first model of every task now and run it once, so a bad source fails before the
        server starts and the first request's time is the model's, not the loading's."""
        import numpy as np

        for task in APP_TASKS:
            menu = self.choices(task)
            if menu:
                self.predictor(menu[0].label).predict(np.zeros((64, 64, 3), np.uint8))

    def _load(self, choice: ModelChoice) -> Predictor:
        if choice.backend != REFERENCE:
            return Predictor(open_runner(choice.backend, choice.source, shape_per_batch=True), batch_size=1, threshold=self.threshold)
        from ..models import load_model

        if model_source(choice.source) == "zoo":
            num_classes, names = ZOO_TASK_SETUP[choice.task]
            extra = {"class_names": names} if names else {}
            model = load_model(choice.source, task=choice.task, num_classes=num_classes,
                               pretrained=self.pretrained, **extra)
        else:
            model = load_model(choice.source)
        return Predictor(model, device=self.device, batch_size=4, threshold=self.threshold)
