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
from ..io.atomic import atomic_write_bytes, atomic_write_text
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
    """Appends one JSON object per line; each line is flushed so a crash keeps what came before.

    A new run starts an empty log. A resumed run passes ``resume_at``, the checkpoint's value of
    ``key`` (``step`` or ``epoch``): records past it were written after that checkpoint by the run
    that was killed, and the resumed run writes them again, so they are dropped first (atomically).
    """

    def __init__(self, path: Path, resume_at: int | None = None, key: str = "step") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = [] if resume_at is None else records_until(path, resume_at, key)
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def records_until(path: Path, last: int, key: str = "step") -> list[dict[str, Any]]:
    """The records of the log at ``path`` whose ``key`` is at most ``last`` (none if it is missing).

    A line cut short by a kill is skipped: only the final line can be, as every line is flushed.
    """
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get(key), int) and record[key] <= last:
            kept.append(record)
    return kept


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
