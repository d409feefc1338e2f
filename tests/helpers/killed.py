"""A fine-tuning run stopped as a kill would stop it, to test ``--resume``."""

from __future__ import annotations

from pathlib import Path

import pytest


def finetune_killed_saving_epoch(cfg, out: Path, epoch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``finetune(cfg, out)`` interrupted (KeyboardInterrupt) while it saves ``last.pth`` for ``epoch``:
    that epoch is logged, ``last.pth`` still holds the one before."""
    from surgenet.train import finetune as finetune_module

    save = finetune_module.atomic_torch_save

    def killed(state, path):
        if state["epoch"] == epoch:
            raise KeyboardInterrupt
        save(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(finetune_module, "atomic_torch_save", killed)
        with pytest.raises(KeyboardInterrupt):
            finetune_module.finetune(cfg, out)
