"""What a run records beside its checkpoints: the config, provenance and a JSON-lines metric log."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from .._version import __version__
from ..io.atomic import atomic_write_bytes
from .config import dump_yaml

LOG_FILE = "log.jsonl"


def git_sha() -> str | None:
    """The commit of the surgenet source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def write_run_info(out_dir: Path, config: Any, world_size: int, extra: Mapping[str, Any] | None = None) -> None:
    """``config.yaml`` (the resolved config) and ``run.json`` (versions, commit, command line)."""
    import timm

    atomic_write_bytes(out_dir / "config.yaml", dump_yaml(config).encode())
    info = {"surgenet_version": __version__, "git_sha": git_sha(), "torch_version": torch.__version__,
            "timm_version": timm.__version__, "python": platform.python_version(), "world_size": world_size,
            "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
    atomic_write_bytes(out_dir / "run.json", (json.dumps(info, indent=2) + "\n").encode())


class MetricLog:
    """Appends one JSON object per line; each line is flushed so a crash keeps what came before."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
