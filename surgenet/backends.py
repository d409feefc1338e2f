"""Which engine runs a model for ``surgenet predict``: PyTorch, or an exported folder's runner.

An *export folder* is the output of ``surgenet-export`` (``model.onnx``, ``model.engine``,
``model.int8.xml``); it runs through the runners of ``surgenet_export`` (extra ``export``),
imported only here and only when asked for, so the core stays free of them. Backend names:

==================== ===================================================================
``torch``            the PyTorch model (zoo name, ``save_pretrained`` folder or Hub id)
``onnxruntime``      ``model.onnx`` with ONNX Runtime
``openvino``         ``model.onnx`` with OpenVINO, FP32 (``openvino-bf16``: bf16 where the CPU has it)
``openvino-int8``    ``model.int8.xml`` (``surgenet-export --int8``), ``openvino-int8-bf16`` likewise
``tensorrt``         ``model.engine`` (NVIDIA GPU)
==================== ===================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import InputError

BACKENDS = ("torch", "onnxruntime", "openvino", "openvino-bf16", "openvino-int8", "openvino-int8-bf16", "tensorrt")
EXPORT_FILES = ("model.onnx", "model.engine", "model.int8.xml")


def is_export_folder(path: str | Path) -> bool:
    """A ``surgenet-export`` output folder (not a ``save_pretrained`` folder, which PyTorch loads)."""
    path = Path(path).expanduser()
    if not path.is_dir() or ((path / "config.json").is_file() and (path / "model.safetensors").is_file()):
        return False
    return any((path / name).is_file() for name in EXPORT_FILES)


def check_backend(model: str, backend: str | None) -> str:
    """The backend that will run ``model``, decided before anything is loaded; a combination that
    cannot work is an :class:`InputError` naming the fix."""
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}.")
    if not is_export_folder(model):
        if backend not in (None, "torch"):
            raise InputError(f"--backend {backend} runs an exported model, and {model} is not a surgenet-export "
                             f"folder; export it first (surgenet-export {model} --out DIR"
                             f"{' --int8 --calib FRAMES' if 'int8' in backend else ''}) and pass --model DIR.")
        return "torch"
    folder = Path(model).expanduser()
    if backend == "torch":
        raise InputError(f"{folder} is an exported model (no PyTorch weights); pass a save_pretrained folder or a "
                         "zoo name for --backend torch, or choose another backend.")
    if backend is None:
        has_graph = (folder / "model.onnx").is_file() or (folder / "model.engine").is_file()
        return "auto" if has_graph else "openvino-int8"
    needed = {"tensorrt": "model.engine"}.get(backend, "model.int8.xml" if "int8" in backend else "model.onnx")
    if not (folder / needed).is_file():
        how = "--int8 --calib FRAMES" if "int8" in backend else "--trt" if backend == "tensorrt" else ""
        raise InputError(f"--backend {backend} needs {folder / needed}, which is not there; write it with "
                         f"surgenet-export ... {how} --out {folder}".rstrip() + ".")
    return backend


def load_runner_for(folder: str | Path, backend: str, device: str | None = None, threads: int | None = None) -> Any:
    """The runner of an export folder for ``backend`` (as decided by :func:`check_backend`); a graph
    exported for a fixed batch size runs any batch (see :func:`split_batches`). ``threads``: the
    CPU threads of ONNX Runtime or OpenVINO (default: theirs)."""
    try:
        from surgenet_export import load_runner
    except ImportError as exc:
        raise InputError("running an exported model needs surgenet_export: pip install 'surgenet[export]'.") from exc
    folder = Path(folder).expanduser()
    if backend.startswith("openvino"):
        path = folder / ("model.int8.xml" if "int8" in backend else "model.onnx")
        return StaticShapeOpenVINO(path, precision="bf16" if backend.endswith("bf16") else "f32", threads=threads)
    options = {"threads": threads} if threads and backend == "onnxruntime" else {}
    runner = load_runner(folder, backend=None if backend == "auto" else backend, device=device, **options)
    session = getattr(runner, "session", None)  # ONNX Runtime: the graph's input shape
    batch = session.get_inputs()[0].shape[0] if session is not None else None
    if isinstance(batch, int) and not runner.config.get("streaming"):
        return FixedBatch(runner, batch)
    return runner


def split_batches(run: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """``run`` on pieces of exactly ``batch`` frames (the last one padded with zeros), outputs joined
    and cut back to ``len(x)``: a graph of a fixed batch size on any batch, without recompiling."""
    outputs = []
    for start in range(0, x.shape[0], batch):
        piece = x[start:start + batch]
        n = piece.shape[0]
        if n < batch:
            piece = np.concatenate([piece, np.zeros((batch - n, *piece.shape[1:]), dtype=piece.dtype)])
        outputs.append(np.asarray(run(piece))[:n])
    return np.concatenate(outputs)


class FixedBatch:
    """A runner whose graph takes exactly ``batch`` frames, made to take any number."""

    def __init__(self, runner: Any, batch: int) -> None:
        self.runner, self.batch, self.config = runner, int(batch), runner.config

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return split_batches(self.runner, x, self.batch)


class StaticShapeOpenVINO:
    """OpenVINO compiled for one input shape (faster on CPU than a dynamic model): the graph's
    batch if it is fixed, else the first batch it is given; other batches are split and padded
    (:func:`split_batches`), never recompiled. Frame graphs only (segmentation, CVS)."""

    def __init__(self, path: Path, precision: str = "f32", threads: int | None = None) -> None:
        import openvino as ov
        from surgenet_export.metadata import read_json, read_onnx_config, sidecar_path

        self.path, self.precision, self.threads = Path(path), precision, threads
        self.config: dict[str, Any] = (read_json(sidecar_path(self.path))["config"] if self.path.suffix == ".xml"
                                       else read_onnx_config(self.path))
        if self.config.get("streaming"):
            raise InputError(f"{path}: a streaming (phase) graph runs with --backend onnxruntime or tensorrt.")
        first = ov.Core().read_model(str(self.path)).inputs[0].get_partial_shape()[0]
        self.fixed_batch = first.get_length() if first.is_static else None
        self._compiled: dict[tuple[int, int], tuple[int, Any]] = {}  # (H, W) -> (batch, runner)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = x.shape
        if (h, w) not in self._compiled:
            from surgenet_export.runners.openvino_runner import OpenVINORunner

            batch = self.fixed_batch or n
            self._compiled[(h, w)] = batch, OpenVINORunner(self.path, precision=self.precision,
                                                           static_shape=(batch, h, w), threads=self.threads,
                                                           config=self.config)
        batch, runner = self._compiled[(h, w)]
        return split_batches(runner, x, batch)
