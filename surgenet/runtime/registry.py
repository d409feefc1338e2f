"""The one list of backends: what runs a model, in what precision, where, and from which artefact.

Every consumer reads it: ``surgenet predict/track --backend``, the web demo's catalog and the
latency benchmark (whose row names are these names). :func:`open_runner` is the one way to open a
runner from a backend name; :func:`unavailable_reason` says in one line why a backend cannot run
on this machine (a missing package, GPU or CPU feature) before anything is loaded.

Artefacts (what a backend needs): ``model`` (the PyTorch model: a zoo name, a ``save_pretrained``
folder or a Hub id), ``onnx`` (``model.onnx`` of ``surgenet-export``), ``openvino-ir``
(``model.int8.xml`` of ``surgenet-export --int8``) and ``tensorrt-engine`` (``model.engine`` of
``surgenet-export --trt``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..exceptions import InputError
from .errors import BackendUnavailableError

RUNTIMES = ("torch", "onnxruntime", "openvino", "tensorrt")
ARTEFACT_FILES = {"model": None, "onnx": "model.onnx", "openvino-ir": "model.int8.xml",
                  "tensorrt-engine": "model.engine"}
# How surgenet-export writes each artefact file (for the messages of a missing one).
ARTEFACT_HOW = {"onnx": "surgenet-export MODEL --out DIR", "openvino-ir": "surgenet-export MODEL --int8 --calib FRAMES --out DIR",
                "tensorrt-engine": "surgenet-export MODEL --trt --out DIR"}


@dataclass(frozen=True)
class Backend:
    """One backend. ``needs`` lists what the machine must have: ``cuda`` (an NVIDIA GPU), CPU flags
    as /proc/cpuinfo names them (``avx512_bf16``; ``bf16`` means AVX512-BF16 or AMX), Python
    packages (``package:openvino``) and ONNX Runtime providers (``provider:CUDAExecutionProvider``).
    ``options`` are the runner's keyword arguments."""

    name: str
    runtime: str
    precision: str
    device: str
    artefact: str
    needs: tuple[str, ...]
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES or self.artefact not in ARTEFACT_FILES or self.device not in ("cpu", "cuda"):
            raise ValueError(f"backend {self.name}: runtime {self.runtime!r}, artefact {self.artefact!r} or "
                             f"device {self.device!r} is not one the runtime knows")

    @property
    def file(self) -> str | None:
        """The file of an export folder this backend runs (None: the PyTorch model)."""
        return ARTEFACT_FILES[self.artefact]


_PKG_ORT, _PKG_OV, _PKG_TRT = "package:onnxruntime", "package:openvino", "package:tensorrt"
_BACKENDS = (
    Backend("torch-eager-fp32", "torch", "fp32", "cpu", "model", (),
            "PyTorch eager FP32, the reference every backend is checked against (predict: on --device)",
            aliases=("torch", "pytorch")),
    Backend("torch-channels-last-fp32", "torch", "fp32", "cpu", "model", (),
            "PyTorch eager FP32 with channels_last weights and inputs", {"channels_last": True}),
    Backend("torch-bf16-autocast", "torch", "bf16", "cpu", "model", ("bf16",),
            "PyTorch under bf16 autocast on a CPU with native bf16 (AVX512-BF16 or AMX)", {"precision": "bf16"}),
    Backend("torch-compile-fp32", "torch", "fp32", "cpu", "model", (),
            "PyTorch FP32 under torch.compile (compiled on the first call)", {"compile": True}),
    Backend("onnxruntime-cpu", "onnxruntime", "fp32", "cpu", "onnx", (_PKG_ORT,),
            "model.onnx with ONNX Runtime on the CPU", {"device": "cpu"}, aliases=("onnxruntime",)),
    Backend("openvino-f32", "openvino", "fp32", "cpu", "onnx", (_PKG_OV,),
            "model.onnx with OpenVINO FP32, compiled per input shape", {"precision": "f32"}, aliases=("openvino",)),
    Backend("openvino-bf16", "openvino", "bf16", "cpu", "onnx", (_PKG_OV, "bf16"),
            "model.onnx with OpenVINO in bf16 (AVX512-BF16 or AMX), compiled per input shape",
            {"precision": "bf16"}),
    Backend("openvino-f16", "openvino", "fp16", "cpu", "onnx", (_PKG_OV, "avx512_fp16"),
            "model.onnx with OpenVINO in FP16 (AVX512-FP16), compiled per input shape", {"precision": "f16"}),
    Backend("openvino-int8", "openvino", "int8", "cpu", "openvino-ir", (_PKG_OV,),
            "model.int8.xml (NNCF int8), its unquantised layers in FP32", {"precision": "f32"}),
    Backend("openvino-int8-bf16", "openvino", "int8+bf16", "cpu", "openvino-ir", (_PKG_OV, "bf16"),
            "model.int8.xml (NNCF int8), its unquantised layers in bf16", {"precision": "bf16"}),
    Backend("torch-cuda-fp32", "torch", "fp32", "cuda", "model", ("cuda",), "PyTorch eager FP32 on the GPU"),
    Backend("torch-cuda-fp16", "torch", "fp16", "cuda", "model", ("cuda",),
            "PyTorch eager with FP16 weights on the GPU", {"precision": "fp16"}),
    Backend("torch-cuda-graphs-fp16", "torch", "fp16", "cuda", "model", ("cuda",),
            "PyTorch FP16, torch.compile with CUDA graphs (reduce-overhead; one graph per input shape)",
            {"precision": "fp16", "cuda_graphs": True}),
    Backend("torch-cuda-graphs-bf16", "torch", "bf16", "cuda", "model", ("cuda",),
            "PyTorch bf16, torch.compile with CUDA graphs (reduce-overhead; one graph per input shape)",
            {"precision": "bf16", "cuda_graphs": True}),
    Backend("onnxruntime-cuda", "onnxruntime", "fp32", "cuda", "onnx",
            ("cuda", _PKG_ORT, "provider:CUDAExecutionProvider"),
            "model.onnx with ONNX Runtime's CUDA provider (onnxruntime-gpu)", {"device": "cuda"}),
    Backend("onnxruntime-tensorrt-fp16", "onnxruntime", "fp16", "cuda", "onnx",
            ("cuda", _PKG_ORT, "provider:TensorrtExecutionProvider"),
            "model.onnx with ONNX Runtime's TensorRT provider in FP16 (engines cached beside the model)",
            {"device": "tensorrt", "fp16": True}),
    Backend("tensorrt", "tensorrt", "as built", "cuda", "tensorrt-engine", ("cuda", _PKG_TRT),
            "model.engine with TensorRT, in the precision it was built with (the benchmark builds FP16)",
            aliases=("tensorrt-fp16",)),
)
BACKENDS: dict[str, Backend] = {b.name: b for b in _BACKENDS}
ALIASES: dict[str, str] = {alias: b.name for b in _BACKENDS for alias in b.aliases}
REFERENCE = "torch-eager-fp32"  # what every backend is checked against
if len(BACKENDS) + len(ALIASES) != len({*BACKENDS, *ALIASES}):
    raise ValueError("a backend name or alias is used twice")


def backend_names(aliases: bool = False, artefact: str | None = None) -> list[str]:
    """The backend names, in the registry's order; with ``aliases`` also the older names; with
    ``artefact`` only those that run it (``model``: the PyTorch backends)."""
    names = [*BACKENDS, *(ALIASES if aliases else ())]
    return [n for n in names if artefact is None or BACKENDS[ALIASES.get(n, n)].artefact == artefact]


def get_backend(name: str) -> Backend:
    """The backend of a name or alias; an unknown name is an :class:`InputError` listing the valid ones."""
    backend = BACKENDS.get(ALIASES.get(name, name))
    if backend is None:
        raise InputError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}.")
    return backend


def unavailable_reason(backend: Backend | str) -> str | None:
    """Why ``backend`` cannot run on this machine (one line), or None when it can."""
    from . import cpu

    backend = get_backend(backend) if isinstance(backend, str) else backend
    for need in backend.needs:
        if need == "cuda":
            import torch

            if not torch.cuda.is_available():
                return f"{backend.name} needs an NVIDIA GPU with CUDA, and torch.cuda.is_available() is False here"
        elif need.startswith("package:"):
            package = need.split(":", 1)[1]
            if importlib.util.find_spec(package) is None:
                extra = "trt" if package == "tensorrt" else "export"
                return f"{backend.name} needs {package}, which is not installed: pip install 'surgenet[{extra}]'"
        elif need.startswith("provider:"):
            import onnxruntime as ort

            provider = need.split(":", 1)[1]
            if provider not in ort.get_available_providers():
                return f"{backend.name}: onnxruntime here has no {provider} (pip install onnxruntime-gpu, needs CUDA)"
        elif need == "bf16":
            if not cpu.cpu_has_native_bf16():
                return (f"{backend.name}: this CPU has no native bf16 (AVX512-BF16 or AMX){_capped()}; it would be "
                        "emulated, many times slower than FP32")
        elif need not in cpu.usable_flags():
            return f"{backend.name}: this CPU has no {need.upper().replace('_', '-')}{_capped()}; it would run FP32"
    return None


def _capped() -> str:
    from . import cpu

    limit = cpu.isa_limit()
    return f" usable under ONEDNN_MAX_CPU_ISA={limit}" if limit else ""


def artefact_path(backend: Backend, folder: str | Path) -> Path:
    """The file of an export folder that ``backend`` runs; a missing one is an :class:`InputError`
    that says how to write it."""
    folder = Path(folder).expanduser()
    path = folder / backend.file if backend.file else folder
    if backend.file and not path.is_file():
        how = ARTEFACT_HOW[backend.artefact].replace("--out DIR", f"--out {folder}")
        raise InputError(f"--backend {backend.name} needs {path}, which is not there; write it with {how}.")
    return path


def open_runner(backend: Backend | str, source: Any, *, device: str | None = None, threads: int | None = None,
                shape_per_batch: bool = False) -> Any:
    """A runner (``runner(x) -> logits``, ``runner.config``) of ``backend`` on ``source``.

    Args:
        backend: a registry name or alias, or a :class:`Backend`.
        source: the ``nn.Module`` for ``model`` backends; otherwise the artefact file or the
            ``surgenet-export`` folder holding it.
        device: overrides the backend's device index (``cuda:1``); a CPU backend refuses CUDA.
        threads: CPU threads of ONNX Runtime and OpenVINO (default: theirs).
        shape_per_batch: OpenVINO compiles one model per (batch, height, width) instead of one per
            size with the first batch (other batches split and padded): what a benchmark measures.

    Raises:
        BackendUnavailableError: the backend cannot run here (the reason of :func:`unavailable_reason`).
    """
    backend = get_backend(backend) if isinstance(backend, str) else backend
    why = unavailable_reason(backend)
    if why:
        raise BackendUnavailableError(why + ".")
    if device is not None and device.split(":")[0] != backend.device:
        raise InputError(f"--backend {backend.name} runs on {backend.device}, not on {device}; drop --device or pick "
                         "a backend of that device.")
    options = dict(backend.options)
    if backend.runtime == "torch":
        from .torch_runner import TorchRunner

        if isinstance(source, (str, Path)):
            raise InputError(f"--backend {backend.name} runs a PyTorch model; {source} is an exported file.")
        return TorchRunner(source, device=device or backend.device, **options)
    path = artefact_path(backend, source) if Path(source).is_dir() else Path(source)
    if backend.runtime == "openvino":
        from .openvino_runner import StaticShapeOpenVINO

        return StaticShapeOpenVINO(path, precision=options["precision"], threads=threads,
                                   shape_per_batch=shape_per_batch)
    if backend.runtime == "onnxruntime":
        from .ort_runner import OnnxRuntimeRunner
        from .shapes import with_fixed_batch

        kind = options.pop("device")
        index = device.partition(":")[2] if device else ""
        return with_fixed_batch(OnnxRuntimeRunner(path, device=f"{kind}:{index}" if index else kind,
                                                  threads=threads, **options))
    from .trt_runner import TensorRTRunner

    return TensorRTRunner(path, device=device or "cuda")


__all__ = ["ALIASES", "ARTEFACT_FILES", "BACKENDS", "Backend", "REFERENCE", "RUNTIMES", "artefact_path",
           "backend_names", "get_backend", "open_runner", "unavailable_reason"]
