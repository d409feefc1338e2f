"""Atomic file writes: the one way surgenet puts a file on disk.

A file is written to a temporary name in its own folder and moved over the target with
``os.replace``, so a reader (or a run killed half-way) sees the old file or the new one, never
half of one. The result gets the permissions a plain ``open()`` would give it (``mkstemp`` alone
would leave it private to the owner).

Durable writes (checkpoints) fsync the data before the rename and the folder after it: the rename
is an entry of the folder, and until the folder is on the disk a power cut can lose it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_target(target: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; write it inside the block. On success it
    replaces ``target``; on any error it is removed and ``target`` is left as it was.

    Args:
        target: the file to write (its folder is created).
        durable: flush the data to the disk before the rename, and the folder's entry after it
            (checkpoints: survive a power cut).

    Examples:
        >>> with atomic_target("out/model.safetensors") as tmp:
        ...     save_file(tensors, str(tmp))
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def fsync_dir(folder: str | Path) -> None:
    """Put ``folder``'s entries (a rename into it) on the disk. Windows has no directory handles
    to sync; file systems that cannot sync a folder (EINVAL/ENOTSUP) have nothing more to flush."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(target: str | Path, data: bytes, durable: bool = False) -> Path:
    with atomic_target(target, durable) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | Path, text: str, durable: bool = False) -> Path:
    with atomic_target(target, durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


__all__ = ["atomic_target", "atomic_write_bytes", "atomic_write_text", "fsync_dir"]
