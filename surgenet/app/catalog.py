"""Which models the web demo offers, per task, and their predictors (loaded once, on first use).

A source is a zoo name (its backbone with freshly initialised task layers for segmentation, CVS,
phase and tools: fine for trying the app, meaningless as predictions, and the page says so), a folder
written by ``save_pretrained`` / ``surgenet-train finetune`` (one task, trained), or an output
folder of ``surgenet-export`` (run by a backend of :mod:`surgenet.runtime`, when the export extra is
installed). An export folder runs by default with ``--backend auto``: the fastest backend on this
machine whose argmax decisions agree with FP32 (:func:`surgenet.runtime.auto.select_backend`, cached
per CPU and model file), chosen once when the catalog warms up; the menu label then names it
(``folder (segmentation, auto → openvino-bf16)``) and the page's model facts give its figures.
``backend=NAME`` (``surgenet app --backend``) runs every export folder with that backend instead.
Backends are names of the one registry. Every source is checked when the catalog is built, before
the server starts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..exceptions import InputError, SurgeNetError
from ..io.text import read_user_text
from ..label_sets import CHOLEC80_PHASES, CHOLEC80_TOOLS, ENDOSCAPES_CLASSES
from ..models.loading import model_source
from ..predict import Predictor
from ..zoo.registry import get_entry
from ..backends import AUTO, check_backend, check_runs_here
from ..runtime.registry import REFERENCE, get_backend, open_runner
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
STREAMING_BACKEND = "onnxruntime-cpu"  # a streaming (phase) graph keeps its temporal state in ONNX Runtime


@dataclass(frozen=True)
class ModelChoice:
    """One entry of a model menu: a source served by one backend for one task."""

    label: str
    task: str
    source: str
    # A registry name: REFERENCE (PyTorch on the catalog's device) or a backend of an export folder;
    # AUTO until the catalog chose it (warm_up), then the backend chosen.
    backend: str
    licence: str
    trained: bool  # task layers fine-tuned (a saved folder) or random (a zoo backbone)
    note: str = ""  # how --backend auto chose the backend (its figures), once it did


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
        # surgenet-export's sidecar (model.onnx.json) holds the task under "config"; a hand-written one may
        # hold it at the top
        if isinstance(data, dict) and ("task" in data or isinstance(data.get("config"), dict)
                                       and "task" in data["config"]):
            return data
    return {}


def _unshown(folder: Path, task: object) -> str:
    return (f"{folder}: task {task!r} is not one the app shows; pass a model of one of these tasks: "
            f"{', '.join(APP_TASKS)}.")


def _export_label(folder: Path, task: str, backend: str, chosen: str | None = None) -> str:
    """``folder (task, backend)``; an auto choice says so: ``folder (task, auto → openvino-bf16)``."""
    return f"{folder.name} ({task}, {backend}{f' → {chosen}' if chosen else ''})"


def _choices_for(source: str, pretrained: bool, backend: str | None = None) -> list[ModelChoice]:
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
        backend = check_backend(str(folder), backend)  # AUTO by default; a named one's file is there
        if backend == AUTO:
            from ..runtime.auto import candidates, reference_of

            if reference_of(candidates(folder)) is None:
                raise InputError(f"{folder} is an exported model; running it needs the export extra: "
                                 'pip install "surgenet[export]" (ONNX Runtime or OpenVINO).')
        else:
            check_runs_here(backend, None)
        licence = sidecar.get("license") or _licence_of(sidecar.get("backbone") or sidecar.get("model"))
        return [ModelChoice(_export_label(folder, task, backend), task, str(folder), backend, licence, True)]
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
        device: where PyTorch models run (and which backends ``auto`` considers: ``cpu`` keeps the CPU ones).
        threshold: the probability at which a CVS criterion counts as met and a tool as present.
        backend: the backend of every surgenet-export folder: ``auto`` (the default) or a registry
            name that runs an exported model (``onnxruntime-cpu``, ``openvino-bf16`` ...).
        on_choice: called with each :class:`~surgenet.runtime.auto.Choice` that ``auto`` makes.
    """

    def __init__(self, sources: Sequence[str], pretrained: bool = True, device: str = "cpu",
                 threshold: float = 0.5, backend: str | None = None,
                 on_choice: Callable[[Any], None] | None = None) -> None:
        if not sources:
            raise InputError("give at least one model: a zoo name (surgenet list) or a fine-tuned folder.")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold must be a probability between 0 and 1, got {threshold}.")
        if backend not in (None, AUTO) and get_backend(backend).artefact == "model":
            raise InputError(f"--backend {backend} runs a PyTorch model; the app's --backend picks the backend of "
                             "surgenet-export folders (PyTorch models run eager on --device): pass auto or a backend "
                             "of an exported model (onnxruntime-cpu, openvino-f32, openvino-bf16 ...).")
        self.pretrained, self.device, self.threshold = pretrained, device, float(threshold)
        self.on_choice = on_choice
        self._choices: list[ModelChoice] = []
        for source in sources:
            for choice in _choices_for(str(source), pretrained, backend):
                if choice.label not in {c.label for c in self._choices}:
                    self._choices.append(choice)
        if backend is not None and not any(c.backend != REFERENCE for c in self._choices):
            raise InputError(f"--backend {backend} picks the backend of surgenet-export folders, and no --model is "
                             "one; drop --backend or add an export folder.")
        self._renamed: dict[str, str] = {}  # the label before auto chose a backend -> the label after
        self._predictors: dict[str, Predictor] = {}
        self._lock = threading.RLock()

    def choices(self, task: str) -> list[ModelChoice]:
        """The menu of one task, fine-tuned models first."""
        return sorted((c for c in self._choices if c.task == task), key=lambda c: not c.trained)

    def get(self, label: str) -> ModelChoice:
        label = self._renamed.get(label, label)
        for choice in self._choices:
            if choice.label == label:
                return choice
        raise InputError(f"no model {label!r} in this app; choose one of the menu.")

    def predictor(self, label: str) -> Predictor:
        """The choice's predictor, loaded once (requests from several browser tabs share it)."""
        with self._lock:
            choice = self.get(label)
            if choice.backend == AUTO:  # not warmed up: chosen now, once
                choice = self._choose(choice)
            if choice.label not in self._predictors:
                self._predictors[choice.label] = self._load(choice)
            return self._predictors[choice.label]

    def choose_backends(self) -> None:
        """Pick the backend of every export folder left to ``auto`` (measured once per machine and
        model file, then read from the cache); the labels then name the backends chosen."""
        with self._lock:
            for choice in list(self._choices):
                if choice.backend == AUTO:
                    self._choose(choice)

    def _choose(self, choice: ModelChoice) -> ModelChoice:
        from ..runtime import auto
        from ..runtime.metadata import read_export_config

        folder = Path(choice.source)
        if read_export_config(folder).get("streaming"):
            backend, note = STREAMING_BACKEND, "auto: a streaming graph keeps its temporal state in ONNX Runtime"
        else:
            picked = auto.select_backend(folder, device=self.device)
            if self.on_choice is not None:
                self.on_choice(picked)
            backend, note = picked.backend, picked.summary()
        chosen = replace(choice, label=_export_label(folder, choice.task, AUTO, backend), backend=backend, note=note)
        self._choices[self._choices.index(choice)] = chosen
        self._renamed[choice.label] = chosen.label
        return chosen

    def warm_up(self) -> None:
        """Choose the backend of every export folder left to ``auto``, then load the first model of
        every task and run it once, so a bad source fails before the server starts and the first
        request's time is the model's, not the loading's."""
        import numpy as np

        self.choose_backends()
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
