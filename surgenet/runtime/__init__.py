"""What runs a model: the registry of backends and the runners of exported artefacts.

``surgenet.runtime.registry`` lists every backend (runtime, precision, device, the artefact it
needs); :func:`open_runner` opens one by name; :func:`load_runner` opens an exported file or
folder with the runtime its file calls for. ONNX Runtime, OpenVINO and TensorRT are optional and
imported only when a runner of theirs is built; the export tools (``surgenet_export``) build the
artefacts and import this package, never the other way round.

    >>> from surgenet.runtime import open_runner
    >>> runner = open_runner("openvino-bf16", "export/")   # runner(x) -> logits, runner.config
"""

from __future__ import annotations

from .base import Runner
from .errors import BackendUnavailableError, ExportError, ParityError
from .loader import load_runner
from .registry import (
    ALIASES, BACKENDS, REFERENCE, RUNTIMES, Backend, backend_names, get_backend, open_runner, unavailable_reason,
)

__all__ = ["ALIASES", "BACKENDS", "REFERENCE", "RUNTIMES", "Backend", "BackendUnavailableError", "ExportError",
           "ParityError", "Runner", "backend_names", "get_backend", "load_runner", "open_runner", "unavailable_reason"]
