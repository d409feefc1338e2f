"""An FP16 copy of an ONNX graph for strongly typed TensorRT (TensorRT 11 has no FP16 flag).

Normalisations and reductions stay in FP32: their sums of squares overflow FP16's 65504
on real activations (LayerNorm after attention, GroupNorm in the FPN, ConvNeXtV2's GRN). Inputs
and outputs stay FP32, so runners and callers see the same interface as the FP32 graph.
"""

from __future__ import annotations

from pathlib import Path

from surgenet.runtime.errors import BackendUnavailableError
from surgenet.runtime.metadata import write_bytes

KEEP_FP32_OPS = (
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "BatchNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Pow", "Sqrt", "Softmax",
)


def convert_to_fp16(onnx_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Write ``model.fp16.onnx`` beside ``onnx_path`` (or at ``out_path``) and return its path."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as exc:
        raise BackendUnavailableError("the FP16 ONNX conversion for strongly typed TensorRT uses onnxruntime's "
                                      "float16 converter: pip install onnxruntime (or onnxruntime-gpu).") from exc
    onnx_path = Path(onnx_path)
    out = Path(out_path) if out_path else onnx_path.with_name(onnx_path.stem + ".fp16.onnx")
    model = onnx.load(str(onnx_path))
    fp16 = convert_float_to_float16(model, keep_io_types=True,
                                    op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(KEEP_FP32_OPS)))
    # The converter casts a tensor once per blocked consumer, under one name, and appends its
    # input casts at the end: drop the identical duplicates, then restore topological order.
    _drop_duplicate_nodes(fp16.graph)
    _sort_topologically(fp16.graph)
    onnx.checker.check_model(fp16)
    return write_bytes(out, fp16.SerializeToString())


def _drop_duplicate_nodes(graph) -> None:
    """Remove nodes that repeat an earlier node exactly (same op, inputs, outputs, attributes)."""
    seen: dict[str, bytes] = {}
    keep = []
    for node in graph.node:
        key = node.SerializeToString(deterministic=True)
        clash = [seen[o] for o in node.output if o in seen]
        if clash and all(c == key for c in clash):
            continue
        if clash:
            raise ValueError(f"the FP16 graph defines {list(node.output)} twice with different nodes; report this as a bug.")
        seen.update({o: key for o in node.output})
        keep.append(node)
    if len(keep) != len(graph.node):
        copies = [type(n)() for n in keep]
        for copy, node in zip(copies, keep):
            copy.CopyFrom(node)
        del graph.node[:]
        graph.node.extend(copies)


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` so that each node follows the producers of its inputs (Kahn)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("the FP16 graph has a cycle or an undefined input; report this as a bug.")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for node in ready:
            ordered.append(node)
            available.update(node.output)
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
