"""Checkpoints that resume a run exactly, written atomically and read without unpickling code.

A checkpoint is a plain mapping of state dicts (student, teacher, optimizer, scaler, loss with
its centre), the step counter (which fixes the sampler position and the schedule index) and the
random states of every process (python, numpy, torch, CUDA). ``torch.save`` goes to a temporary
file in the same folder, then ``os.replace`` puts it in place, so a kill never leaves a torn file.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..exceptions import CheckpointError
from ..io.atomic import atomic_target

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "surgenet-dino/1"
LATEST = "checkpoint.pth"


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_target(path, durable=True) as tmp:
        torch.save(obj, tmp)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (the ones layers and workers draw from)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """This process's random states as tensors, ints and tuples only (safe to load)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: Mapping[str, Any], out_dir: Path, extra_name: str | None = None) -> Path:
    """Write ``out_dir/checkpoint.pth`` (and ``extra_name`` beside it, as a kept copy)."""
    path = out_dir / LATEST
    atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, path)
    if extra_name:
        atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, out_dir / extra_name)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code runs)."""
    if path.is_dir():
        path = path / LATEST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: --resume continues the run whose --out holds "
                              f"{LATEST}; drop --resume to start a new run.")
    return read_checkpoint_file(path, CHECKPOINT_FORMAT,
                                "delete it to start over or restore a kept checkpoint_epochNNNN.pth")


def read_checkpoint_file(path: Path, expected_format: str, fix: str) -> dict[str, Any]:
    """A training-state file of ``expected_format``, read with ``weights_only`` (no code runs).

    A damaged, truncated or foreign file is a CheckpointError whose message ends with ``fix``
    (what the user can do about it), never a traceback from deep inside torch.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file (EOFError, zip errors, ...)
        # torch's own text is left out: for a damaged file it suggests weights_only=False, i.e. unpickling
        raise CheckpointError(f"{path} cannot be read, it is damaged or truncated ({type(exc).__name__}); "
                              f"{fix}.") from exc
    if not isinstance(state, dict) or state.get("format") != expected_format:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a {expected_format} checkpoint (found {found!r}); {fix}.")
    return state
