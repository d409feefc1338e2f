"""Measuring a model on this machine: the machine's facts, timed calls, latency statistics, GFLOP
counts, the machine's peak (one large matrix product), and result files (JSON, tables, plots).

The benchmarks in ``benchmarks/`` and ``--backend auto`` share these, so every figure they print
is labelled and computed the same way. The benchmarks also share how a backend of the registry is
opened on a model (:func:`open_benchmark_runner`, on the files that
``surgenet_export.artefacts.BackendArtefacts`` builds: the core never imports the export tools),
how a size is written on their command lines (:func:`parse_size`) and the busy-machine warning."""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..io.atomic import atomic_write_text
from ..io.table import format_table
from .cpu import FEATURES_OF_INTEREST as CPU_FLAGS_OF_INTEREST, cpu_family_model, cpu_flags, cpu_model, isa_limit
from .cpu import AVX2_ONLY_ENV, cpu_has_native_bf16, usable_flags
from . import registry



def machine_info() -> dict[str, Any]:
    """CPU, GPU and library versions, recorded with every result."""
    import torch

    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_generation": cpu_family_model(), "onednn_max_cpu_isa": isa_limit(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_flags": sorted(f for f in CPU_FLAGS_OF_INTEREST if f in flags),
        "usable_cpu_flags": sorted(f for f in CPU_FLAGS_OF_INTEREST if f in usable_flags()),
        "isa_caps": {k: os.environ[k] for k in AVX2_ONLY_ENV if os.environ.get(k)},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(), "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": omp_wait_policy(),
        "versions": {"torch": torch.__version__},
    }
    for module in ("timm", "onnx", "onnxruntime", "openvino", "tensorrt", "surgenet"):
        try:
            info["versions"][module] = __import__(module).__version__
        except Exception:  # not installed, or a broken install: either way there is no version to record
            info["versions"][module] = None
    return info


def gemm_gflops(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """The machine's practical compute ceiling: GFLOP/s of one large square matrix product in
    PyTorch (oneDNN/MKL), FP32 and, where the CPU has it natively, bf16 (AMX or AVX512-BF16).
    A backend's GFLOP/s against this says whether it is compute-bound or losing time elsewhere."""
    import torch

    dtypes = [torch.float32] + ([torch.bfloat16] if cpu_has_native_bf16() else [])
    rates = {}
    for dtype in dtypes:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        rates[str(dtype).removeprefix("torch.")] = 2 * size**3 / best / 1e9
    return rates


def time_calls(fn: Callable[[], Any], warmup: int, iters: int, sync: Callable[[], None] | None = None) -> list[float]:
    """Milliseconds of ``iters`` calls after ``warmup`` calls; ``sync`` waits for the GPU."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def latency_stats(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    arr = np.asarray(times_ms, dtype=np.float64)
    median = float(statistics.median(arr))
    return {"median_ms": median, "p90_ms": float(np.percentile(arr, 90)), "p99_ms": float(np.percentile(arr, 99)),
            "fps": batch * 1e3 / median}


def gflops_per_frame(model, imgsz: Sequence[int]) -> float:
    """FLOPs of one frame (multiply-add = 2), counted on a copy with timm's fused attention off,
    since the counter does not look inside fused attention kernels."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counted = copy.deepcopy(model).float().cpu().eval()
    for module in counted.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        counted(torch.randn(1, 3, int(imgsz[0]), int(imgsz[1])))
    return counter.get_total_flops() / 1e9


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (readable on screen, pasteable into a README), by the one table printer."""
    return format_table(headers, rows, markdown=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write: a partial benchmark never leaves a truncated JSON behind."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def plot_results(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Median latency per backend, one group of bars per (batch, size)."""
    from ..figures import pyplot, save_figure

    plt = pyplot()
    groups = sorted({(r["batch"], tuple(r["imgsz"])) for r in results})
    backends = list(dict.fromkeys(r["backend"] for r in results))
    width = 0.8 / max(1, len(backends))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) * max(1, len(backends)) / 3), 4.5))
    for i, backend in enumerate(backends):
        xs, ys = [], []
        for g, (batch, size) in enumerate(groups):
            row = next((r for r in results if r["backend"] == backend and r["batch"] == batch
                        and tuple(r["imgsz"]) == size), None)
            if row is not None:
                xs.append(g + i * width)
                ys.append(row["median_ms"])
        ax.bar(xs, ys, width, label=backend)
    ax.set_xticks([g + width * (len(backends) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"batch {b}\n{s[0]}x{s[1]}" for b, s in groups])
    ax.set_ylabel("median latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


# How to get the int8 rows: the one line said whenever an int8 backend lacks its calibration frames.
CALIB_HINT = ("needs --calib FRAMES_DIR: a folder of ~100 real surgical frames to calibrate int8 on (e.g. a "
              "train split's images/, such as DATA/endoscapes/train/images; not the frames the "
              "benchmark judges mIoU on)")


class Unavailable(Exception):
    """A backend that cannot run here; the message says why."""


def open_benchmark_runner(name: str, artefacts: Any) -> Any:
    """The runner of one backend, opened by the registry on what ``artefacts`` (a
    ``surgenet_export.artefacts.BackendArtefacts``: ``artefact(kind)`` and ``threads``) gives it;
    :class:`Unavailable` with its reason when it cannot run here. OpenVINO compiles one model per
    (batch, height, width), as a deployment would."""
    backend = registry.get_backend(name)
    why = registry.unavailable_reason(backend)
    if why:
        raise Unavailable(why)
    return registry.open_runner(backend, artefacts.artefact(backend.artefact), threads=artefacts.threads,
                                shape_per_batch=True)


def parse_size(text: str) -> tuple[int, int]:
    """``256`` (square) or ``256x448`` (H x W); an argparse type."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use 256 (square) or 256x448 (height x width)")
    from ..bounds import bounded

    side = bounded("image_side")
    return side(str(parts[0])), side(str(parts[1]))


parse_size.bound_name = "image_side"  # type: ignore[attr-defined]  # the flag walk of tests/cli sees the bound


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# Eager PyTorch on a busy machine: its OpenMP threads spin-wait for each other at the end of every
# operator (about 2,200 per frame for SurgeNetXL CAFormer), and a spinning thread burns the time
# slice the descheduled one needs. Measured on 2 busy cores (load average 5 to 7), SurgeNetXL
# CAFormer at 64x64: median 495-935 ms by default, 109-125 ms with OMP_WAIT_POLICY=PASSIVE; ONNX
# Runtime and OpenVINO (work-stealing pools) hardly notice. On an idle machine spinning is the fast
# choice, so the benchmarks keep the default and say so.
OMP_HINT = ("eager PyTorch suffers most: its OpenMP threads spin-wait for each other after every operator; "
            "measure on an idle machine, or set OMP_WAIT_POLICY=PASSIVE for the run (it is several times "
            "faster on a busy machine, and may be slower on an idle one)")


def omp_wait_policy() -> str | None:
    """``OMP_WAIT_POLICY`` as this process started with it (read by OpenMP when it loads)."""
    value = os.environ.get("OMP_WAIT_POLICY")
    return value.strip().upper() if value and value.strip() else None


def warn_if_busy() -> float | None:
    """Warn on stderr when other processes compete for the cores; return the 1-minute load average."""
    load = load_average()
    if load is not None and load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: other processes compete for the cores "
              "and CPU timings will be slow and noisy" + ("" if omp_wait_policy() else f"; {OMP_HINT}") + ".",
              file=sys.stderr)
    return load
