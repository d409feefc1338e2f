"""The atomic writer's durable mode: data synced before the rename, the folder's entry after it."""

from __future__ import annotations

import os
import stat

import pytest

from surgenet.io.atomic import atomic_target, atomic_write_bytes

pytestmark = pytest.mark.skipif(not hasattr(os, "O_DIRECTORY"), reason="no directory handles to sync (Windows)")


@pytest.fixture
def calls(monkeypatch):
    """Every fsync (of a file or of a folder, by inode) and rename, in the order they happen."""
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", "dir" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_durable_write_syncs_the_folder_after_the_rename(tmp_path, calls):
    target = tmp_path / "run" / "checkpoint.pth"
    atomic_write_bytes(target, b"weights", durable=True)
    assert target.read_bytes() == b"weights"
    folder_inode = os.stat(target.parent).st_ino
    kinds = [event[:2] for event in calls]
    assert kinds == [("fsync", "file"), ("replace", str(target)), ("fsync", "dir")]
    assert calls[2][2] == folder_inode  # the folder that holds the new entry, not another one


def test_plain_write_does_not_sync(tmp_path, calls):
    target = tmp_path / "mask.png"
    atomic_write_bytes(target, b"png")
    assert target.read_bytes() == b"png"
    assert calls == [("replace", str(target))]


def test_failed_write_leaves_the_old_file_and_syncs_nothing(tmp_path, calls):
    target = tmp_path / "checkpoint.pth"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_target(target, durable=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]
