"""Parity of an exported model with PyTorch: the same random inputs, the outputs compared.

A check passes when ``max|out - ref| <= atol + rtol * max|ref|`` (the scale of the logits
differs between models, so a pure absolute limit would be too strict for one and too loose for
another) and, where a minimum is set, the argmax agreement reaches it. Streaming graphs run a
few steps, each fed the state the backend itself returned, so drift would accumulate and show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from surgenet.evaluation.metrics import decision_agreement as agreement  # one definition, shared with the benchmarks

from surgenet.runtime.errors import ExportError
from surgenet.runtime.graph import GraphSpec

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], Sequence[np.ndarray]]

STREAM_STEPS = 3


@dataclass(frozen=True)
class Tolerance:
    """Limits of one parity check (see the module docstring)."""

    atol: float
    rtol: float
    min_argmax_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FP32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-4)
# FP16 keeps about 3 decimal digits; a segmentation map must still agree almost everywhere.
FP16_TOLERANCE = Tolerance(atol=2e-2, rtol=2e-2, min_argmax_agreement=0.98)


def parity_shapes(batch: int, hw: Sequence[int], dynamic: bool, size_multiple: int = 1) -> list[tuple[int, int, int]]:
    """(batch, H, W) to check: the export shape, and with ``dynamic`` also another batch and size.

    The second size is about 3/4 of the first (bigger when that is too small), on the model's
    size multiple, so that a graph with shapes frozen at export time fails it.
    """
    h, w = int(hw[0]), int(hw[1])
    shapes = [(int(batch), h, w)]
    if dynamic:
        m = max(32, int(size_multiple))

        def other(v: int) -> int:
            smaller = (v * 3 // 4) // m * m
            return smaller if smaller >= m and smaller != v else v + m

        shapes.append((int(batch) + 1, other(h), other(w)))
    return shapes


def compare(ref: np.ndarray, out: np.ndarray, task: str, tolerance: Tolerance) -> dict[str, Any]:
    """Error metrics of one output and whether they are within ``tolerance``."""
    ref = np.asarray(ref, dtype=np.float32)
    out = np.asarray(out, dtype=np.float32)
    if ref.shape != out.shape:
        return {"passed": False, "error": f"output shape {list(out.shape)} != PyTorch {list(ref.shape)}",
                "max_abs_err": float("inf"), "allowed_abs_err": 0.0}
    finite = bool(np.isfinite(out).all())
    diff = np.abs(out - ref)
    max_ref = float(np.abs(ref).max()) if ref.size else 0.0
    allowed = tolerance.atol + tolerance.rtol * max_ref
    result = {
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "mean_abs_err": float(diff.mean()) if diff.size else 0.0,
        "max_abs_ref": max_ref,
        "allowed_abs_err": allowed,
        "argmax_agreement": agreement(ref, out, task),
        "finite": finite,
    }
    ok = finite and result["max_abs_err"] <= allowed
    if tolerance.min_argmax_agreement is not None:
        ok = ok and result["argmax_agreement"] >= tolerance.min_argmax_agreement
    result["passed"] = bool(ok)
    return result


def torch_reference(spec: GraphSpec, device: str | torch.device = "cpu") -> RunFn:
    """Run ``spec.module`` in float32 on ``device`` as the reference."""
    module = spec.module.to(device)

    def run(feeds: Feeds) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(device) for n in spec.input_names]
        with torch.inference_mode():
            out = module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().float().cpu().numpy() for o in outs]

    return run


def check_parity(spec: GraphSpec, run: RunFn, shapes: Sequence[tuple[int, int, int]], tolerance: Tolerance,
                 seed: int = 0, reference: RunFn | None = None) -> dict[str, Any]:
    """Run the backend and PyTorch on fresh random inputs at each shape and compare the logits."""
    reference = reference or torch_reference(spec)
    gen = torch.Generator().manual_seed(10_000 + seed)  # not the inputs the graph was traced with
    task = spec.config["task"]
    checks = []
    for b, h, w in shapes:
        shape = [b, 3, h, w]
        steps = STREAM_STEPS if spec.streaming else 1
        ref_state = out_state = [s.numpy() for s in spec.initial_state(b)]
        worst: dict[str, Any] | None = None
        try:
            for _ in range(steps):
                x = spec.image_input(b, (h, w), gen).numpy()
                ref = reference(_feeds(spec, x, ref_state))
                out = list(run(_feeds(spec, x, out_state)))
                metrics = compare(ref[0], out[0], task, tolerance)
                if spec.streaming:
                    state_err = max((float(np.abs(np.asarray(o, np.float32) - r).max()) for o, r in zip(out[1:], ref[1:])),
                                    default=0.0)
                    metrics["max_state_err"] = state_err
                    ref_state, out_state = ref[1:], out[1:]
                # Keep the first failure, else the largest error over the steps.
                if worst is None or (worst["passed"] and (not metrics["passed"]
                                                          or metrics["max_abs_err"] > worst["max_abs_err"])):
                    worst = metrics
                if not metrics["passed"]:
                    break
        except ExportError:
            raise
        except Exception as exc:  # a runtime that rejects the shape fails this check, with its message
            worst = {"passed": False, "error": f"{type(exc).__name__}: {exc}", "max_abs_err": float("inf"),
                     "allowed_abs_err": 0.0}
        checks.append({"shape": shape, "steps": steps, **worst})
    return {
        "reference": "pytorch-fp32",
        "tolerance": tolerance.to_dict(),
        "size_multiple": int(spec.config.get("size_multiple", 1)),
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
    }


def _feeds(spec: GraphSpec, x: np.ndarray, state: Sequence[np.ndarray]) -> Feeds:
    feeds = {spec.input_names[0]: x}
    feeds.update({name: np.asarray(s, dtype=np.float32) for name, s in zip(spec.input_names[1:], state)})
    return feeds


def validate_onnx(path: str | Path, spec: GraphSpec, shapes: Sequence[tuple[int, int, int]],
                  tolerance: Tolerance, seed: int = 0) -> dict[str, Any]:
    """``onnx.checker`` on the file, then ONNX Runtime (CPU) against PyTorch at ``shapes``."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected {path}: {exc}") from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    report = check_parity(spec, lambda feeds: session.run(None, feeds), shapes, tolerance, seed)
    report["runtime"] = f"onnxruntime {ort.__version__} CPUExecutionProvider"
    return report
