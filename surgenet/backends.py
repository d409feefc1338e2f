"""Which backend runs a model for ``surgenet predict`` and ``surgenet track``, decided before
anything is loaded: the checks of the command lines on top of the one registry
(:mod:`surgenet.runtime.registry`, whose names and aliases these are).

An *export folder* is the output of ``surgenet-export`` (``model.onnx``, ``model.engine``,
``model.int8.xml``); a PyTorch model is a zoo name, a ``save_pretrained`` folder or a Hub id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .exceptions import InputError
from .runtime.registry import (
    ARTEFACT_FILES, REFERENCE, artefact_path, backend_names, get_backend, open_runner,
    unavailable_reason,
)
from .runtime.shapes import FixedBatch, split_batches, with_fixed_batch

BACKENDS = tuple(backend_names(aliases=True))  # what --backend accepts: the registry's names and aliases
EXPORT_FILES = tuple(f for f in ARTEFACT_FILES.values() if f)
# An export folder without --backend (or with --backend auto): the fastest backend whose decisions
# stay FP32's on this machine, measured once and cached (surgenet.runtime.auto).
AUTO = "auto"


def is_export_folder(path: str | Path) -> bool:
    """A ``surgenet-export`` output folder (not a ``save_pretrained`` folder, which PyTorch loads)."""
    path = Path(path).expanduser()
    if not path.is_dir() or ((path / "config.json").is_file() and (path / "model.safetensors").is_file()):
        return False
    return any((path / name).is_file() for name in EXPORT_FILES)


def check_backend(model: str, backend: str | None) -> str:
    """The registry name of the backend that will run ``model`` (or :data:`AUTO`), decided before
    anything is loaded; a combination that cannot work is an :class:`InputError` naming the fix."""
    if backend == AUTO:
        if not is_export_folder(model):
            raise InputError(f"--backend auto picks a backend of an exported model, and {model} is not a "
                             f"surgenet-export folder; export it first (surgenet-export {model} --out DIR) and pass "
                             "--model DIR, or drop --backend.")
        backend = None
    chosen = get_backend(backend) if backend is not None else None
    if not is_export_folder(model):
        if chosen is not None and chosen.artefact != "model":
            how = {"openvino-ir": " --int8 --calib FRAMES", "tensorrt-engine": " --trt"}.get(chosen.artefact, "")
            raise InputError(f"--backend {backend} runs an exported model, and {model} is not a surgenet-export "
                             f"folder; export it first (surgenet-export {model} --out DIR{how}) and pass --model DIR.")
        return chosen.name if chosen is not None else REFERENCE
    folder = Path(model).expanduser()
    if chosen is not None and chosen.artefact == "model":
        raise InputError(f"{folder} is an exported model (no PyTorch weights); pass a save_pretrained folder or a "
                         f"zoo name for --backend {backend}, or choose a backend of an exported model.")
    if chosen is None:
        has_graph = (folder / "model.onnx").is_file() or (folder / "model.engine").is_file()
        return AUTO if has_graph else "openvino-int8"
    artefact_path(chosen, folder)  # the file it runs is there, or the message says how to write it
    return chosen.name


def check_runs_here(backend: str, device: str | None) -> None:
    """A backend that cannot run on this machine (no GPU, a package or CPU feature missing), or on
    ``device``, is an :class:`InputError` of one line, before any model is loaded."""
    entry = get_backend(backend)
    why = unavailable_reason(entry)
    if why:
        raise InputError(why + ".")
    if device and entry.name != REFERENCE and device.split(":")[0] != entry.device:
        raise InputError(f"--backend {entry.name} runs on {entry.device}, not on {device}; drop --device or pick a "
                         "backend of that device.")


def runs_eager(backend: str) -> bool:
    """A PyTorch backend that is the plain model on ``--device`` (the Predictor's own path)."""
    entry = get_backend(backend)
    return entry.artefact == "model" and not entry.options


def eager_device(backend: str, device: str | None) -> str | None:
    """Where an eager PyTorch backend runs: ``--device`` for the reference (default CUDA when there
    is one), else ``--device`` or the backend's own device (``torch-cuda-fp32``: cuda)."""
    return device if backend == REFERENCE else device or get_backend(backend).device


def load_runner_for(folder: str | Path, backend: str, device: str | None = None, threads: int | None = None,
                    *, auto_frames: str | Path | None = None, rebenchmark: bool = False,
                    on_choice: Callable[[Any], None] | None = None) -> Any:
    """The runner of an export folder for ``backend`` (as decided by :func:`check_backend`); a graph
    exported for a fixed batch size runs any batch (see :func:`split_batches`). ``threads``: the
    CPU threads of ONNX Runtime or OpenVINO (default: theirs).

    :data:`AUTO` picks the backend with :func:`surgenet.runtime.auto.select_backend` (judged on
    ``auto_frames``, else the shipped frames; ``rebenchmark`` measures again) and hands the
    :class:`~surgenet.runtime.auto.Choice` to ``on_choice``. A streaming (phase) graph keeps its
    state only in ONNX Runtime or TensorRT: there AUTO is the folder's engine on a GPU, else ONNX Runtime."""
    if backend == AUTO and _streaming(folder):
        from .runtime.loader import load_runner

        return with_fixed_batch(load_runner(folder, device=device))
    if backend == AUTO:
        from .runtime.auto import device_for, select_backend

        choice = select_backend(folder, frames_dir=auto_frames, threads=threads, device=device, refresh=rebenchmark)
        if on_choice is not None:
            on_choice(choice)
        return open_runner(choice.backend, folder, device=device_for(choice.backend, device), threads=threads)
    return open_runner(backend, folder, device=device, threads=threads)


def _streaming(folder: str | Path) -> bool:
    """An export folder whose graph carries a temporal state (phase); a folder without an ONNX file is not."""
    onnx_file = Path(folder).expanduser() / "model.onnx"
    if not onnx_file.is_file():
        return False
    from .runtime.metadata import read_onnx_config

    return bool(read_onnx_config(onnx_file).get("streaming"))


__all__ = ["AUTO", "BACKENDS", "EXPORT_FILES", "FixedBatch", "check_backend", "check_runs_here", "eager_device", "is_export_folder", "load_runner_for",
           "runs_eager", "split_batches"]
