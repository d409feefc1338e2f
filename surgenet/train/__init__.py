"""surgenet.train: reproduce SurgeNet's DINO pretraining, compare it with BYOL, SimCLR and MSN on
the same engine (``config.method``), and fine-tune the task heads.

Install with ``pip install 'surgenet[train]'``; the command is ``surgenet-train`` (or
``python -m surgenet.train``, or ``torchrun ... -m surgenet.train`` for several processes).
The core package never imports this one.

    >>> from surgenet.train import load_config
    >>> from surgenet.train.pretrain import pretrain
    >>> config = load_config("tiny", ["data.sources=[frames/]", "train.max_steps=3"])
    >>> records = pretrain(config, "runs/tiny")
"""

from __future__ import annotations

from .config import PretrainConfig, available_configs, load_config

__all__ = ["PretrainConfig", "available_configs", "load_config"]
