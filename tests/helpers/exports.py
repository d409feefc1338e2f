"""A tiny ``surgenet-export`` folder, written without any download (random weights, a 32 x 32 graph)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

SIZE = (32, 32)


def write_tiny_export(folder: Path, task: str = "segmentation", num_classes: int = 4,
                      size: Sequence[int] = SIZE) -> Path:
    """``folder/model.onnx`` (and its sidecar) of a random ``surgenet-caformer`` task model, exported
    by surgenet_export as a user's folder would be; needs the export extra (onnx, onnxruntime)."""
    import surgenet
    from surgenet_export import export_onnx

    model = surgenet.load_model("surgenet-caformer", task=task, num_classes=num_classes, pretrained=False,
                                input_size=tuple(size))
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, folder / "model.onnx", imgsz=tuple(size), simplify=False)
    return folder
