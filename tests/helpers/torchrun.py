"""Running ``surgenet-train`` once in one process and once on two gloo processes through torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on now (torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_and_two_processes(args: Sequence[str], tmp_path: Path) -> tuple[Path, Path]:
    """``python -m surgenet.train ARGS --out ONE``, then the same under ``torchrun --nproc_per_node=2``
    with ``--out TWO``; returns (ONE, TWO). A failing two-process run fails with its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(REPO / "export"), os.environ.get("PYTHONPATH", "")])}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "surgenet.train", *args, "--out", str(one)], env=env, check=True,
                   capture_output=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "-m", "surgenet.train", *args, "--out", str(two)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return one, two
