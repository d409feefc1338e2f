"""Export of the teacher backbone in the zoo's format: ``DIR/teacher/{model.safetensors, config.json}``.

``surgenet.load_backbone(NAME, weights=DIR/teacher)`` then loads it like a released model
(``NAME`` of the same architecture). The state dict is timm's layout, the one the zoo loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from .._version import __version__
from ..io.atomic import atomic_target, atomic_write_bytes
from ..zoo.registry import get_entry, input_size_for
from .run_state import load_checkpoint


def export_teacher(network: torch.nn.Module, name: str, out_dir: str | Path,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write the timm network ``network`` (a teacher's ``FeatureBackbone.model``) to ``out_dir``."""
    from safetensors.torch import save_file

    entry = get_entry(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    with atomic_target(out_dir / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "arch": entry.arch})
    config = {"arch": entry.arch, "name": entry.name, "source": "surgenet-train", "surgenet_version": __version__,
              "input_size": input_size_for(entry, (extra or {}).get("network_kwargs")),
              "mean": list(entry.mean), "std": list(entry.std),
              **(extra or {})}
    atomic_write_bytes(out_dir / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return out_dir


def teacher_backbone_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The teacher's timm state dict inside a surgenet-train checkpoint."""
    prefix = "backbone.model."
    return {k[len(prefix):]: v for k, v in checkpoint["teacher"].items() if k.startswith(prefix)}


def export_from_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Export the teacher of a saved checkpoint (for example a kept ``checkpoint_epochNNNN.pth``)."""
    from ..zoo.backbones import create_network

    state = load_checkpoint(Path(checkpoint))
    config = state["config"]
    name = config["model"]["name"]
    network = create_network(get_entry(name).arch, **config["model"].get("network_kwargs", {}))
    network.load_state_dict(teacher_backbone_state(state))
    return export_teacher(network, name, out_dir, {"step": state["step"], "epoch": state["epoch"],
                                                   "network_kwargs": config["model"].get("network_kwargs", {})})
