"""What is exported: the model's forward (segmentation, CVS) or its online step (phase).

A phase model carries a temporal state across frames, so one graph of its offline ``forward``
would need the whole video. Its online step ``(frame, *state) -> (logits, *next_state)`` is a
pure function instead: exported, it runs the whole model (backbone and temporal part) in ONNX
Runtime or TensorRT, and the runner keeps the state between calls.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from .errors import ExportError
from .preprocess import BakedNormalize

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
REQUIRED_KEYS = ("task", "num_classes", "mean", "std", "input_size")


class OnlineStep(nn.Module):
    """``forward(frame, *state) -> (logits, *next_state)`` of a streaming model's ``step``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model.step(frame, tuple(state))
        return (logits, *new_state)


class SingleOutput(nn.Module):
    """Accepts models that return a dict with ``logits`` or a tuple whose first item is the logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, Mapping) and "logits" in out:
            return out["logits"]
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            return out[0]
        raise ExportError(f"the model returns {type(out).__name__}; export needs a tensor of logits "
                          "(or a dict with 'logits').")


@dataclass
class GraphSpec:
    """The module to trace, its input/output names and the config that travels with the graph."""

    module: nn.Module
    config: dict[str, Any]
    input_names: list[str] = field(default_factory=lambda: [INPUT_NAME])
    output_names: list[str] = field(default_factory=lambda: [OUTPUT_NAME])
    state_shapes: list[list[int]] = field(default_factory=list)  # at batch 1
    state_batch_axes: list[int] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        return bool(self.state_shapes)

    def image_input(self, batch: int, hw: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """A random input in the range the graph expects: RGB in 0..1 when preprocessing is baked,
        otherwise roughly what a normalised frame looks like (zero mean, unit spread)."""
        shape = (batch, 3, int(hw[0]), int(hw[1]))
        if self.config["preprocess_baked"]:
            return torch.rand(shape, generator=generator)
        return torch.randn(shape, generator=generator)

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        states = []
        for shape, axis in zip(self.state_shapes, self.state_batch_axes):
            shape = list(shape)
            shape[axis] = batch
            states.append(torch.zeros(shape))
        return states

    def example_inputs(self, batch: int, hw: Sequence[int], seed: int = 0) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        return (self.image_input(batch, hw, gen), *self.initial_state(batch))

    def dynamic_axes(self, spatial: bool) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch", **({2: "height", 3: "width"} if spatial else {})}}
        if self.streaming:
            axes[OUTPUT_NAME] = {0: "batch"}
            for name, axis in zip(self.input_names[1:], self.state_batch_axes):
                axes[name] = {axis: "batch"}
            for name, axis in zip(self.output_names[1:], self.state_batch_axes):
                axes[name] = {axis: "batch"}
        elif self.config["task"] == "segmentation":
            axes[OUTPUT_NAME] = dict(axes[INPUT_NAME])
        else:
            axes[OUTPUT_NAME] = {0: "batch"}
        return axes


def model_config(model: nn.Module, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model's config (``model.config`` of a surgenet task model), checked for what runners need."""
    cfg = dict(config if config is not None else getattr(model, "config", None) or {})
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ExportError(f"the model config lacks {', '.join(missing)}; export a surgenet task model "
                          "(surgenet.load_model) or pass config={'task': ..., 'num_classes': ..., 'mean': ..., "
                          "'std': ..., 'input_size': ...}.")
    return cfg


def build_graph(model: nn.Module, config: Mapping[str, Any] | None = None, bake_preprocess: bool = False) -> GraphSpec:
    """The :class:`GraphSpec` of ``model``: its forward, or its online step for streaming models."""
    cfg = model_config(model, config)
    model = model.eval()
    streaming = bool(getattr(model, "streaming", False))
    cfg.update(
        preprocess_baked=bool(bake_preprocess),
        input_format="rgb01" if bake_preprocess else "normalized",
        streaming=streaming,
        size_multiple=int(getattr(model, "size_multiple", 1)),
    )
    if bake_preprocess:
        # The graph normalises itself: a caller following the config (mean 0, std 1) feeds 0..1 RGB,
        # which is what create_transform yields for these statistics. The model's own are kept.
        cfg["baked_mean"], cfg["baked_std"] = list(cfg["mean"]), list(cfg["std"])
        cfg["mean"], cfg["std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if not streaming:
        module: nn.Module = SingleOutput(model)
        if bake_preprocess:
            module = BakedNormalize(module, cfg["baked_mean"], cfg["baked_std"])
        return GraphSpec(module.eval(), cfg)
    if not hasattr(model, "init_state") or not hasattr(model, "step"):
        raise ExportError(f"{type(model).__name__} is marked streaming but has no init_state/step to export.")
    one, two = model.init_state(1), model.init_state(2)
    axes = []
    for a, b in zip(one, two):
        diff = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
        if len(diff) != 1:
            raise ExportError("cannot find the batch axis of the model's temporal state; export needs states "
                              "whose shape depends on the batch size along exactly one axis.")
        axes.append(diff[0])
    module = OnlineStep(model)
    if bake_preprocess:
        module = BakedNormalize(module, cfg["baked_mean"], cfg["baked_std"])
    n = len(one)
    spec = GraphSpec(module.eval(), cfg,
                     input_names=[INPUT_NAME, *(f"state_{i}" for i in range(n))],
                     output_names=[OUTPUT_NAME, *(f"next_state_{i}" for i in range(n))],
                     state_shapes=[list(s.shape) for s in one], state_batch_axes=axes)
    cfg.update(state_names=spec.input_names[1:], next_state_names=spec.output_names[1:],
               state_shapes=spec.state_shapes, state_batch_axes=axes)
    return spec


def detached_copy(model: nn.Module) -> nn.Module:
    """A CPU float32 copy, so export never moves or casts the caller's model."""
    return copy.deepcopy(model).to("cpu", torch.float32).eval()
