"""What this CPU is and what it computes natively: the one place CPU features are read.

The backend registry (``needs``), ``--backend auto`` (its candidates and its cache key), the
training precision choice and the benchmarks' machine labels all read these. Features come from
the ``flags`` line of /proc/cpuinfo (Linux names: ``avx2``, ``avx512f``, ``avx512_bf16``,
``avx512_vnni``, ``amx_bf16`` ...); where there is no /proc/cpuinfo (macOS, Windows) the flags are
empty and native bf16 is asked of oneDNN.

``ONEDNN_MAX_CPU_ISA`` (oneDNN's own switch, for example ``AVX2``) makes PyTorch's oneDNN behave
like an older CPU; the flags do not change with it, so :func:`isa_limit` reports it separately and
it is part of :func:`cpu_fingerprint`.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

# The features that decide which backend is fast here, in the order they are printed.
FEATURES_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
                        "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products in hardware
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in one instruction (VNNI or AMX)
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str) -> str | None:
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.split(":", 1)[0].strip() == name:
            return line.split(":", 1)[1].strip()
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them in /proc/cpuinfo (empty where it cannot be read)."""
    line = _cpuinfo_field("flags")
    return set(line.split()) if line else set()


def cpu_model() -> str:
    """The CPU's marketing name (``AMD EPYC 9R14 96-Core Processor``), or what the platform says."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_family_model() -> str | None:
    """``family 25 model 17`` (x86 /proc/cpuinfo): tells CPU generations apart where the name does not."""
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    return f"family {family} model {model}" if family and model else None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Elsewhere PyTorch and OpenVINO
    emulate it, many times slower than fp32, so an automatic precision choice stays in fp32 there."""
    flags = cpu_flags()
    if flags:
        return bool(set(BF16_FLAGS) & flags)
    try:  # no /proc/cpuinfo (macOS, Windows): ask oneDNN
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError, ImportError):
        return False


def cpu_has_int8_dot() -> bool:
    """Whether int8 dot products are one instruction here (VNNI or AMX): without them int8 gains
    little over FP32."""
    return bool(set(INT8_DOT_FLAGS) & cpu_flags())


def isa_limit() -> str | None:
    """oneDNN's ISA cap from ``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``), if set."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip() else None


def cpu_features() -> list[str]:
    """The features of :data:`FEATURES_OF_INTEREST` this CPU has, in that order."""
    flags = cpu_flags()
    return [f for f in FEATURES_OF_INTEREST if f in flags]


def cpu_label() -> str:
    """One line naming the CPU and its features, for messages and benchmark tables."""
    limit = isa_limit()
    features = ", ".join(cpu_features()) or "features unknown"
    generation = cpu_family_model()
    return f"{cpu_model()}{f' {generation}' if generation else ''} ({features}{f'; ONEDNN_MAX_CPU_ISA={limit}' if limit else ''})"


def cpu_fingerprint() -> str:
    """A short hash of the CPU model, all its flags and the oneDNN ISA cap: what a speed measured
    here is valid for (another CPU, or the same one capped, measures again)."""
    text = "\n".join([cpu_model(), cpu_family_model() or "", " ".join(sorted(cpu_flags())), isa_limit() or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["BF16_FLAGS", "FEATURES_OF_INTEREST", "INT8_DOT_FLAGS", "cpu_family_model", "cpu_features", "cpu_fingerprint", "cpu_flags",
           "cpu_has_int8_dot", "cpu_has_native_bf16", "cpu_label", "cpu_model", "isa_limit"]
