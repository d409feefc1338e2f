"""``--backend auto``: the fastest backend of an exported model whose decisions stay those of FP32, on this machine.

Candidates are the registry's backends (:mod:`surgenet.runtime.registry`) whose artefact the
export folder holds and that can run here (:func:`~surgenet.runtime.registry.unavailable_reason`:
bf16 only with AVX512-BF16 or AMX, int8 only when ``model.int8.xml`` was written, CUDA ones only
with a GPU). Each is judged against the folder's FP32 graph (ONNX Runtime, else OpenVINO FP32):

* **fidelity** on frames: real ones when the user names a folder (``--auto-frames``; a dataset
  folder with ``images/`` + ``masks/`` also gives the mIoU of both), else the Endoscapes frames
  shipped with the package. A candidate passes when its argmax decisions agree with FP32 on at
  least :data:`AGREEMENT_MIN` of the pixels (frames, labels) and, with masks, its mIoU is at most
  :data:`MIOU_DROP_MAX` points below FP32's;
* **speed**: one frame at the export size, :data:`WARMUP` calls, then the median of :data:`RUNS`.

The fastest passing candidate wins (FP32 itself always passes). The choice and every figure are
cached in ``backend-auto.json`` under the user cache folder (``$SURGENET_CACHE``, else
``$XDG_CACHE_HOME/surgenet``, else ``~/.cache/surgenet``; written atomically), keyed by the CPU
(model, flags and oneDNN's ISA cap), the hash of the model files, the input size, the thread count
and the frames; ``refresh`` measures again.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..exceptions import InputError
from ..io.atomic import atomic_write_text
from . import cpu
from .registry import BACKENDS, Backend, artefact_path, unavailable_reason

AGREEMENT_MIN = 0.995  # share of argmax decisions equal to FP32's
MIOU_DROP_MAX = 1.0  # mIoU points below FP32 (segmentation, frames with masks)
WARMUP, RUNS = 3, 10
MAX_FRAMES = 16  # fidelity frames read from a user's folder
CACHE_FILE = "backend-auto.json"
CACHE_VERSION = 1
AUTO_ARTEFACTS = ("onnx", "openvino-ir", "tensorrt-engine")
IGNORE_ISA_CAP = ("onnxruntime",)  # ONNX Runtime's CPU kernels pick their ISA from CPUID alone


@dataclass
class Measurement:
    """One candidate's figures: median ms (None when it was not timed), agreement with FP32 (0..1)
    and, with masks, the mIoU drop in points; ``note`` says why it failed or was skipped."""

    backend: str
    median_ms: float | None = None
    agreement: float | None = None
    miou_drop: float | None = None
    passed: bool = False
    note: str = ""


@dataclass
class Choice:
    """The backend picked, every candidate's figures, and what they were measured on."""

    backend: str
    measurements: list[Measurement]
    cpu: str
    frames: str
    key: str
    cached: bool = False
    created: float = field(default_factory=time.time)

    def measured(self) -> Measurement:
        return next(m for m in self.measurements if m.backend == self.backend)

    def summary(self) -> str:
        """One line: ``backend auto -> NAME (ms, agreement; measured or cached, CPU)``."""
        m = self.measured()
        figures = [f"{m.median_ms:.1f} ms" if m.median_ms is not None else "not timed"]
        if m.agreement is not None:
            figures.append(f"agreement {100 * m.agreement:.1f} %")
        if m.miou_drop is not None:
            figures.append(f"mIoU drop {m.miou_drop:.2f} points")
        rivals = sorted((x for x in self.measurements if x.backend != self.backend), key=lambda x: x.backend)
        others = "; ".join(" ".join([x.backend] + ([f"{x.median_ms:.1f} ms"] if x.median_ms is not None else [])
                                    + ([f"failed: {x.note}"] if not x.passed else [])) for x in rivals)
        how = "cached" if self.cached else "measured"
        return (f"backend auto -> {self.backend} ({', '.join(figures)}; {how}, {self.cpu})"
                + (f" [others: {others}]" if others else ""))

    def table(self) -> str:
        """Every candidate's figures as a table (fastest first, the untimed after), the chosen one
        marked: what the summary line shortens."""
        from ..io.table import format_table

        def cell(value: float | None, fmt: str) -> str:
            return "-" if value is None else fmt.format(round(value, 2) + 0.0)  # + 0.0: no "-0.00"

        order = sorted(self.measurements, key=lambda m: (m.median_ms is None, m.median_ms or 0.0, m.backend))
        rows = [[("* " if m.backend == self.backend else "  ") + m.backend, cell(m.median_ms, "{:.1f}"),
                 cell(None if m.agreement is None else 100 * m.agreement, "{:.2f}"), cell(m.miou_drop, "{:+.2f}"),
                 "chosen" if m.backend == self.backend else "passed" if m.passed else m.note or "failed"]
                for m in order]
        return format_table(["backend", "ms", "agreement %", "mIoU drop (points)", "result"], rows)

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "measurements": [asdict(m) for m in self.measurements], "cpu": self.cpu,
                "frames": self.frames, "created": self.created}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], key: str) -> Choice:
        return cls(data["backend"], [Measurement(**m) for m in data["measurements"]], data["cpu"], data["frames"],
                   key, cached=True, created=float(data.get("created", 0.0)))


# --- candidates ---------------------------------------------------------------------------------

def candidates(folder: str | Path, device: str | None = None) -> list[Backend]:
    """The backends that could run this export folder here (artefact present, machine able), in
    the registry's order; ``device`` (``cpu``, ``cuda[:N]``) keeps those of that device. Under a
    oneDNN ISA cap (``ONEDNN_MAX_CPU_ISA``, set to choose for an older CPU class) the CPU runtimes
    that ignore it (:data:`IGNORE_ISA_CAP`) are left out: their speed here is not that class's."""
    folder = Path(folder).expanduser()
    kind = device.split(":")[0] if device else None
    capped = cpu.isa_limit() is not None
    found = []
    for backend in BACKENDS.values():
        if backend.artefact not in AUTO_ARTEFACTS or not (folder / backend.file).is_file():
            continue
        if kind is not None and backend.device != kind:
            continue
        if capped and backend.device == "cpu" and backend.runtime in IGNORE_ISA_CAP:
            continue
        if unavailable_reason(backend) is None:
            found.append(backend)
    return found


def reference_of(found: Sequence[Backend]) -> Backend | None:
    """The FP32 graph every candidate is judged against: the first FP32 ONNX backend on the CPU."""
    return next((b for b in found if b.artefact == "onnx" and b.precision == "fp32" and b.device == "cpu"), None)


# --- measuring ----------------------------------------------------------------------------------

def median_ms(run: Callable[[], Any], warmup: int = WARMUP, runs: int = RUNS,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """The median wall time of ``run()`` in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, runs)):
        start = clock()
        run()
        times.append(1000.0 * (clock() - start))
    return float(statistics.median(times))


def _miou(preds: Sequence[np.ndarray], masks: Sequence[np.ndarray], num_classes: int) -> float:
    from ..evaluation.metrics import confusion_matrix, segmentation_metrics_from_confusion

    cm = sum(confusion_matrix(p, m, num_classes, ignore_index=255) for p, m in zip(preds, masks))
    return float(segmentation_metrics_from_confusion(cm)["mean_iou"])


def judge(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray], task: str,
          masks: Sequence[np.ndarray] | None = None, num_classes: int | None = None) -> tuple[float, float | None]:
    """Agreement of ``outputs`` with the FP32 ``reference`` over all frames (share of decisions),
    and with ``masks`` (segmentation) the mIoU drop in points."""
    from ..evaluation.metrics import decision_agreement

    agreement = float(np.mean([decision_agreement(r, o, task) for r, o in zip(reference, outputs)]))
    drop = None
    if masks is not None and task == "segmentation":
        ref_preds = [_at_mask_size(r, m) for r, m in zip(reference, masks)]
        out_preds = [_at_mask_size(o, m) for o, m in zip(outputs, masks)]
        drop = 100.0 * (_miou(ref_preds, masks, num_classes) - _miou(out_preds, masks, num_classes))
    return agreement, drop


def _at_mask_size(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Argmax of (1, C, h, w) logits, nearest-resized to the mask's size."""
    labels = np.asarray(logits)[0].argmax(0)
    rows = (np.arange(mask.shape[0]) * labels.shape[0] // mask.shape[0]).clip(0, labels.shape[0] - 1)
    cols = (np.arange(mask.shape[1]) * labels.shape[1] // mask.shape[1]).clip(0, labels.shape[1] - 1)
    return labels[rows][:, cols]


def choose(openers: Mapping[str, Callable[[], Callable[[np.ndarray], np.ndarray]]], reference: str,
           frames: Sequence[np.ndarray], task: str, masks: Sequence[np.ndarray] | None = None,
           num_classes: int | None = None, *, warmup: int = WARMUP, runs: int = RUNS,
           clock: Callable[[], float] = time.perf_counter) -> tuple[str, list[Measurement]]:
    """The fastest candidate whose fidelity passes, and every candidate's figures.

    ``openers`` maps a backend name to a function that opens its runner (``runner(x) -> logits``);
    ``reference`` (one of them) is FP32 and always passes. A candidate that cannot open, or fails
    fidelity, is not timed.
    """
    if reference not in openers:
        raise ValueError(f"the reference {reference!r} is not among the candidates")
    ref_runner = openers[reference]()
    ref_out = [np.asarray(ref_runner(x)) for x in frames]
    results: list[Measurement] = []
    for name, opener in openers.items():
        m = Measurement(name)
        try:
            runner = ref_runner if name == reference else opener()
            outputs = ref_out if name == reference else [np.asarray(runner(x)) for x in frames]
        except Exception as exc:  # a backend that fails here (a plugin, a shape) is skipped, and said why
            m.note = f"could not run: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
            results.append(m)
            continue
        m.agreement, m.miou_drop = judge(ref_out, outputs, task, masks, num_classes)
        if m.agreement < AGREEMENT_MIN:
            m.note = f"agreement {100 * m.agreement:.2f} % < {100 * AGREEMENT_MIN:g} %"
        elif m.miou_drop is not None and m.miou_drop > MIOU_DROP_MAX:
            m.note = f"mIoU drop {m.miou_drop:.2f} > {MIOU_DROP_MAX:g} points"
        else:
            m.passed = True
            m.median_ms = median_ms(lambda: runner(frames[0]), warmup, runs, clock)
        results.append(m)
    passing = [m for m in results if m.passed]
    best = min(passing, key=lambda m: m.median_ms)
    return best.backend, results


# --- frames -------------------------------------------------------------------------------------

def fidelity_frames(config: Mapping[str, Any], folder: str | Path | None = None,
                    limit: int = MAX_FRAMES) -> tuple[list[np.ndarray], list[np.ndarray] | None, str]:
    """The frames the candidates are judged on, as (1, 3, h, w) graph inputs at the export size;
    the masks (segmentation, a user's dataset folder with ``masks/``); and what they are."""
    from ..io.images import IMAGE_EXTENSIONS, read_image
    from ..transforms import ImageTransform

    if folder is None:
        from ..samples import endoscapes_frames

        files, masks_dir, source = endoscapes_frames(), None, "the shipped Endoscapes frames"
    else:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise InputError(f"--auto-frames {folder}: there is no such folder; pass a folder of frames (or a "
                             "dataset folder with images/ and masks/).")
        images = root / "images" if (root / "images").is_dir() else root
        files = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"--auto-frames {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        step = max(1, len(files) // limit)
        files = files[::step][:limit]  # spread over the folder
        masks_dir = root / "masks" if images != root and (root / "masks").is_dir() else None
        source = f"{len(files)} frames of {root.resolve()}"
    hw = (config.get("export") or {}).get("imgsz") or config["input_size"][1:]
    transform = ImageTransform((int(hw[0]), int(hw[1])), config["mean"], config["std"])
    frames = [np.ascontiguousarray(transform(read_image(f)).numpy()[None], dtype=np.float32) for f in files]
    masks = None
    if masks_dir is not None and config.get("task") == "segmentation":
        paths = [masks_dir / f"{f.stem}.png" for f in files]
        if all(p.is_file() for p in paths):
            from PIL import Image

            masks = [np.asarray(Image.open(p)) for p in paths]
            classes = max(2, int(config["num_classes"]))
            top = max(int(m[m != 255].max(initial=0)) for m in masks)
            if top >= classes or int(config["num_classes"]) < 2:
                raise InputError(f"--auto-frames {folder}: its masks hold class {top}, and the model has "
                                 f"{config['num_classes']} classes; pass the frames of this model's dataset, or "
                                 "a folder of frames alone (agreement with FP32 is then the only measure).")
            source += " with masks"
    return frames, masks, source


# --- the cache ----------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$SURGENET_CACHE``, else ``$XDG_CACHE_HOME/surgenet``, else ``~/.cache/surgenet``."""
    if os.environ.get("SURGENET_CACHE"):
        return Path(os.environ["SURGENET_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "surgenet"


def files_hash(paths: Sequence[Path]) -> str:
    """A hash of the bytes of ``paths`` (and their names): changes when any model file does."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


def model_files(folder: Path, found: Sequence[Backend]) -> list[Path]:
    """The files the candidates run, with their weights (``.bin``, external ``.data``)."""
    files: set[Path] = set()
    for backend in found:
        path = folder / backend.file
        files.add(path)
        for extra in (path.with_suffix(".bin"), path.with_name(path.name + ".data"),
                      path.with_name(path.stem + ".onnx_data")):
            if extra.is_file():
                files.add(extra)
    return sorted(files)


def cache_key(model_hash: str, input_size: Sequence[int], threads: int | None, frames: str,
              device: str | None = None) -> str:
    """What a measurement holds for: this CPU, these model files, input size, threads, frames, device."""
    facts = {"cpu": cpu.cpu_fingerprint(), "model": model_hash, "input": [int(v) for v in input_size],
             "threads": threads or os.cpu_count(), "frames": frames, "device": device or "any",
             "agreement_min": AGREEMENT_MIN, "miou_drop_max": MIOU_DROP_MAX}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def read_cache(root: Path | None = None) -> dict[str, Any]:
    """The cached choices (key -> choice); a missing or unreadable file is an empty cache."""
    path = (root or cache_dir()) / CACHE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def write_cache(choice: Choice, root: Path | None = None) -> Path:
    """Add ``choice`` to the cache file (atomically: a reader never sees half a file)."""
    root = root or cache_dir()
    entries = read_cache(root)
    entries[choice.key] = choice.to_json()
    text = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(root / CACHE_FILE, text)


def device_for(backend: str, device: str | None) -> str | None:
    """Where the chosen ``backend`` opens: on ``device`` when it is of that kind (``cuda:1`` for a
    CUDA backend), else on its own device (the FP32 reference on the CPU when a GPU was asked for)."""
    same = device is not None and device.split(":")[0] == BACKENDS[backend].device
    return device if same else None


# --- the whole choice ---------------------------------------------------------------------------

def select_backend(folder: str | Path, *, frames_dir: str | Path | None = None, threads: int | None = None,
                   device: str | None = None, refresh: bool = False, cache_root: str | Path | None = None,
                   warmup: int = WARMUP, runs: int = RUNS) -> Choice:
    """The backend ``--backend auto`` runs ``folder`` (a ``surgenet-export`` folder) with, from the
    cache or measured now (``refresh``: measured now, whatever the cache holds)."""
    from .metadata import read_onnx_config
    from .registry import open_runner

    folder = Path(folder).expanduser()
    everything = candidates(folder)
    reference = reference_of(everything)  # judged on the CPU's FP32 graph whatever the device
    kind = device.split(":")[0] if device else None
    found = [b for b in everything if kind is None or b.device == kind or b == reference]
    if reference is None:
        raise InputError(f"--backend auto needs {folder / 'model.onnx'} and ONNX Runtime or OpenVINO to judge the "
                         "other backends against FP32; pass --backend NAME, or export with surgenet-export.")
    config = read_onnx_config(artefact_path(reference, folder))
    hw = (config.get("export") or {}).get("imgsz") or config["input_size"][1:]
    frames, masks, source = fidelity_frames(config, frames_dir)
    root = Path(cache_root).expanduser() if cache_root else None
    key = cache_key(files_hash(model_files(folder, found)), hw, threads, source, device)
    if not refresh:
        entry = read_cache(root).get(key)
        if entry is not None and entry.get("backend") in {b.name for b in found}:
            return Choice.from_json(entry, key)
    openers = {b.name: (lambda b=b: open_runner(b, folder, device=device if b.device == kind else None,
                                                 threads=threads)) for b in found}
    best, measurements = choose(openers, reference.name, frames, config["task"], masks,
                                int(config["num_classes"]), warmup=warmup, runs=runs)
    choice = Choice(best, measurements, cpu.cpu_label(), source, key)
    try:
        write_cache(choice, root)
    except OSError as exc:  # a read-only home: the choice still stands, measured again next time
        import warnings

        warnings.warn(f"could not cache the backend choice in {root or cache_dir()}: {exc}", stacklevel=2)
    return choice


__all__ = ["AGREEMENT_MIN", "MIOU_DROP_MAX", "Choice", "Measurement", "cache_dir", "cache_key", "candidates",
           "choose", "device_for", "fidelity_frames", "files_hash", "judge", "median_ms", "read_cache", "reference_of",
           "select_backend", "write_cache"]
