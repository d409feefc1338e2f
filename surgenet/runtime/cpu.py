"""What this CPU is and what it computes natively: the one place CPU features are read.

The backend registry (``needs``), ``--backend auto`` (its candidates and its cache key), the
training precision choice and the benchmarks' machine labels all read these. Features come from
the ``flags`` line of /proc/cpuinfo (Linux names: ``avx2``, ``avx512f``, ``avx512_bf16``,
``avx512_vnni``, ``amx_bf16`` ...); where there is no /proc/cpuinfo (macOS, Windows) the flags are
empty and native bf16 is asked of oneDNN.

``ONEDNN_MAX_CPU_ISA`` (oneDNN's own switch, for example ``AVX2``) makes oneDNN (PyTorch's and
OpenVINO's) behave like an older CPU. The flags do not change with it, so :func:`isa_limit`
reports it separately, it is part of :func:`cpu_fingerprint`, and :func:`usable_flags` drops the
features above it: a capped machine is offered the backends an uncapped CPU of that class gets
(no bf16 backends under ``AVX2``). To approximate an AVX2-only CPU on a newer one, set
:data:`AVX2_ONLY_ENV` (oneDNN, MKL and ATen capped; ONNX Runtime's own kernels have no such switch).
"""

from __future__ import annotations

import functools
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

# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA), lowest first; the aliases name the same level.
ISA_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
              "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "ALL")
ISA_ALIASES = {"AVX10_1_512": "AVX512_CORE_FP16", "AVX10_1_512_AMX": "AVX512_CORE_AMX",
               "AVX10_1_512_AMX_FP16": "AVX512_CORE_AMX_FP16", "DEFAULT": "ALL"}
# The lowest oneDNN ISA level that uses a flag; flags not listed are not capped.
_FLAG_LEVEL = {"avx2": "AVX2", "fma": "AVX2", "avx_vnni": "AVX2_VNNI", "avx512_vnni": "AVX512_CORE_VNNI",
               "avx512_bf16": "AVX512_CORE_BF16", "avx512_fp16": "AVX512_CORE_FP16", "amx_bf16": "AVX512_CORE_AMX",
               "amx_int8": "AVX512_CORE_AMX", "amx_tile": "AVX512_CORE_AMX", "amx_fp16": "AVX512_CORE_AMX_FP16"}
# An AVX2-only CPU (a Zen 3 EPYC, most laptops) approximated on a newer x86 CPU: oneDNN (PyTorch's
# convolutions, OpenVINO), MKL (PyTorch's matrix products) and ATen's vector kernels capped at AVX2.
AVX2_ONLY_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


@functools.lru_cache(maxsize=1)
def _cpuinfo_text() -> str | None:
    """/proc/cpuinfo, read once per process (the registry asks for the flags once per backend)."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return None


def _cpuinfo_field(name: str) -> str | None:
    text = _cpuinfo_text()
    if text is None:
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


def _flag_level(flag: str) -> int | None:
    if flag in _FLAG_LEVEL:
        return ISA_LEVELS.index(_FLAG_LEVEL[flag])
    if flag.startswith("avx512"):
        return ISA_LEVELS.index("AVX512_CORE")
    return None


def usable_flags() -> set[str]:
    """The CPU's flags that oneDNN may use under :func:`isa_limit` (all of them without a cap): what
    the backend registry and the precision choice read."""
    flags = cpu_flags()
    limit = isa_limit()
    if limit is None:
        return flags
    limit = ISA_ALIASES.get(limit, limit)
    if limit not in ISA_LEVELS:
        return flags  # a name this table does not know: oneDNN decides, the flags stay
    cap = ISA_LEVELS.index(limit)
    return {f for f in flags if (level := _flag_level(f)) is None or level <= cap}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX) and no ISA cap hides it.
    Elsewhere PyTorch and OpenVINO emulate it, many times slower than fp32, so an automatic
    precision choice stays in fp32 there."""
    flags = usable_flags()
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
    return bool(set(INT8_DOT_FLAGS) & usable_flags())


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


__all__ = ["AVX2_ONLY_ENV", "BF16_FLAGS", "ISA_LEVELS", "usable_flags", "FEATURES_OF_INTEREST", "INT8_DOT_FLAGS", "cpu_family_model", "cpu_features", "cpu_fingerprint", "cpu_flags",
           "cpu_has_int8_dot", "cpu_has_native_bf16", "cpu_label", "cpu_model", "isa_limit"]
