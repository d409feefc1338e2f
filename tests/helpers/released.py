"""Checkpoints in the released layouts, made from a model with random weights.

The flat teacher file holds the backbone keys plus the DINO head under ``head.``; the full DINO
checkpoint holds ``student``/``teacher`` (``module.``/``backbone.`` prefixes), an optimizer
state, the DINO loss centre, the epoch and ``args`` as an ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse

import torch


def dino_head_state(in_dim: int, out_dim: int = 64, hidden: int = 32, bottleneck: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "head.mlp.0.weight": torch.randn(hidden, in_dim, generator=g), "head.mlp.0.bias": torch.zeros(hidden),
        "head.mlp.2.weight": torch.randn(hidden, hidden, generator=g), "head.mlp.2.bias": torch.zeros(hidden),
        "head.mlp.4.weight": torch.randn(bottleneck, hidden, generator=g), "head.mlp.4.bias": torch.zeros(bottleneck),
        "head.last_layer.weight_g": torch.ones(out_dim, 1),
        "head.last_layer.weight_v": torch.randn(out_dim, bottleneck, generator=g),
    }


def teacher_file(backbone_state: dict[str, torch.Tensor], embed_dim: int) -> dict[str, torch.Tensor]:
    """The ``*_checkpoint_epoch0050_teacher.pth`` form."""
    return {**{k: v.clone() for k, v in backbone_state.items()}, **dino_head_state(embed_dim)}


def full_dino_checkpoint(backbone_state: dict[str, torch.Tensor], embed_dim: int,
                         ddp_teacher: bool = True) -> dict:
    """The ``*_checkpoint0050.pth`` form (DINO's ``save_on_master`` dict)."""
    wrapped = {f"backbone.{k}": v.clone() for k, v in backbone_state.items()}
    wrapped.update(dino_head_state(embed_dim))
    student = {f"module.{k}": v + 0.5 for k, v in wrapped.items()}  # differs: teacher must win
    teacher = {f"module.{k}": v for k, v in wrapped.items()} if ddp_teacher else wrapped
    return {
        "student": student,
        "teacher": teacher,
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                      "param_groups": [{"lr": 1e-4, "weight_decay": 0.04, "params": [0]}]},
        "epoch": 50,
        "args": argparse.Namespace(arch="caformer_s18", out_dim=65536, lr=0.0005, data_path="/data"),
        "dino_loss": {"center": torch.zeros(1, 64)},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                        "growth_interval": 2000, "_growth_tracker": 0},
    }
