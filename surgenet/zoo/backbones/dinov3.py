"""DINOv3 state that timm would rebuild or fix, kept as the SurgeNetXL files hold it.

Two tensors of the SurgeNetDINO runs are state in Meta's code but derived values in timm's
DINOv3 port: the RoPE periods and the attention key bias. Here both become state again.

**RoPE periods.**
Meta's DINOv3 code keeps the RoPE ``periods`` as a persistent buffer computed in the training
dtype; the SurgeNetXL runs trained with ``pos_embed_rope_dtype: bf16``, so their files hold bf16
periods (``100 ** (1/16)`` is stored as 1.3359, not 1.3335). Meta's hub loader copies those
values into an fp32 buffer and computes in fp32. timm's :class:`RotaryEmbeddingDinoV3` instead
recomputes the periods from the formula in fp32 (a non-persistent buffer, rebuilt on every
downcast), so with the sharp attention of trained weights its features drift from Meta's by
about 1e-3 of their scale.

:class:`StoredPeriodsRope` is timm's module with the periods made state again: persistent,
loaded from the file, kept in fp32 through ``.half()``/``.to(bfloat16)`` and
``init_non_persistent_buffers``, and checked on load against the values Meta's code can have
computed (the fp32 formula, its bf16 rounding, or the formula evaluated in bf16). A file
without periods keeps the formula.

**Key bias.** SurgeNetDINO trained with ``mask_k_bias: false``, so the key bias is a learned
weight; timm's ``EvaAttention`` keeps ``k_bias`` as a zero buffer outside the state dict and
zeroes it again in ``init_non_persistent_buffers``. :class:`LearnedKeyBiasAttention` makes it a
parameter that is loaded, saved, trained and left alone by buffer re-initialisation (with RoPE
a key bias changes the attention, so it cannot be dropped).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3
from timm.models.eva import EvaAttention

from ...exceptions import CheckpointError


class StoredPeriodsRope(RotaryEmbeddingDinoV3):
    """timm's DINOv3 RoPE whose ``periods`` are loaded from the weights and stay as loaded."""

    def period_candidates(self) -> dict[str, torch.Tensor]:
        """The periods Meta's code computes for this head size, by how it computes them (fp32)."""
        formula = self._compute_periods()
        return {
            "fp32 formula": formula,
            "bf16 rounding of the formula": formula.to(torch.bfloat16).float(),
            "formula evaluated in bf16": self._formula_in(torch.bfloat16).float(),
        }

    def _formula_in(self, dtype: torch.dtype) -> torch.Tensor:
        # Meta's RopePositionEmbedding._init_weights with dtype = the RoPE dtype of the run.
        if self.temperature is None:  # min/max periods: Meta's code computes them in fp32 first
            return self._compute_periods().to(dtype)
        quarter, half = self.dim // 4, self.dim // 2
        return self.temperature ** (2 * torch.arange(quarter, dtype=dtype) / half)

    def optional_state(self) -> dict[str, torch.Tensor]:
        """State the weights may leave out, with the value it then takes (files without periods,
        task models saved before the periods were kept): the fp32 formula, as timm computes it."""
        return {"periods": self._compute_periods(device=self.periods.device)}

    def check_loaded_state(self, source: str) -> None:
        """Refuse periods that Meta's code cannot have computed (another base, another head size,
        a damaged file): a silent fallback to the formula would hide a wrong file."""
        loaded = self.periods.detach().float().cpu()
        for expected in self.period_candidates().values():
            if loaded.shape == expected.shape and torch.allclose(loaded, expected, rtol=1e-6, atol=0.0):
                return
        formula = self.period_candidates()["fp32 formula"]
        worst = int((loaded - formula).abs().argmax()) if loaded.shape == formula.shape else 0
        raise CheckpointError(
            f"{source}: the RoPE periods it holds (e.g. {float(loaded.flatten()[worst]):.6g}) are neither the DINOv3 "
            f"formula with base {self.temperature:g} and head size {self.dim} ({float(formula[worst]):.6g}) nor its "
            "bf16 rounding. The file was trained with other RoPE settings than this architecture, or is damaged; "
            "re-export it from its training checkpoint, or remove 'rope_embed.periods' to use the formula."
        )

    def reset_parameters(self) -> None:
        """Initialisation: the periods from the formula (loading then replaces them)."""
        self.periods.copy_(self._compute_periods(device=self.periods.device))
        self.init_non_persistent_buffers()

    def init_non_persistent_buffers(self) -> None:
        """Rebuild only what follows from the periods (timm's cached grid), never the periods."""
        if self.feat_shape is not None and self.pos_embed_cached is not None:
            self.pos_embed_cached.copy_(self._create_embed(self.feat_shape, no_aug=True))

    def _apply(self, fn: Any, recurse: bool = True) -> "StoredPeriodsRope":
        periods = self.periods.detach().clone()
        module = nn.Module._apply(self, fn, recurse)
        if self.periods.dtype != torch.float32:  # .half(), .to(bfloat16): periods stay fp32 (timm's rule too)
            self.periods = periods.to(device=self.periods.device, dtype=torch.float32)
        return module


def keep_stored_rope_periods(network: nn.Module) -> None:
    """Make the DINOv3 RoPE of ``network`` hold its periods as state (see :class:`StoredPeriodsRope`).

    The module's class is swapped in place: it adds behaviour, no constructor state, so the
    instance timm built (its grid, coordinate augmentations, dtype rules) stays as configured.
    """
    rope = getattr(network, "rope", None)
    if not isinstance(rope, RotaryEmbeddingDinoV3):
        raise TypeError(f"{type(network).__name__} has no DINOv3 RoPE module to keep periods in")
    rope.__class__ = StoredPeriodsRope
    rope._non_persistent_buffers_set.discard("periods")


class LearnedKeyBiasAttention(EvaAttention):
    """timm's Eva attention whose key bias is a weight like the query and value biases."""

    def _init_buffers(self) -> None:
        """No buffers to rebuild: ``k_bias`` is a parameter (initialised with q/v, then loaded)."""

    def reset_parameters(self) -> None:
        """timm's initialisation, with the key bias zeroed as the query and value biases are."""
        super().reset_parameters()
        if isinstance(self.k_bias, nn.Parameter):
            with torch.no_grad():
                self.k_bias.zero_()


def make_key_bias_a_weight(network: nn.Module) -> None:
    """Turn every Eva attention's zero ``k_bias`` buffer into a parameter (see the module docstring).

    As for the RoPE, the class is swapped in place, since it adds behaviour and no constructor state."""
    for module in network.modules():
        if not isinstance(module, EvaAttention) or "k_bias" not in module._buffers:
            continue
        k_bias = module._buffers.pop("k_bias")
        module._non_persistent_buffers_set.discard("k_bias")
        if k_bias is None:
            continue
        module.__class__ = LearnedKeyBiasAttention
        module.k_bias = nn.Parameter(torch.zeros_like(k_bias))
