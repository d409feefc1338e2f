"""Builds a Hugging Face cache on disk, the layout huggingface_hub reads offline:
``models--ORG--NAME/refs/<revision>`` holding a commit sha, and ``snapshots/<sha>/FILE``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch


class HubCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / ("models--" + repo_id.replace("/", "--"))

    def add(self, repo_id: str, filename: str, content: Any, revision: str = "main") -> Path:
        """Store ``content`` (bytes, or an object for ``torch.save``) as ``filename`` at ``revision``."""
        sha = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
        repo = self.repo_dir(repo_id)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(sha)
        path = repo / "snapshots" / sha / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (bytes, bytearray)):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        return path
