"""What an archive job reads: every video and frame folder of a folder tree, or of a manifest CSV.

Each input gets a stable id (its path relative to the archive root, or the manifest's ``id``,
sanitised by :func:`surgenet.io.paths.unique_names`: no ``..``, no absolute path, two ids that
sanitise alike kept apart) that names its outputs, and a fingerprint (size and modification time) that tells a re-run whether it
changed since it was done. Everything is checked before the first frame is decoded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

from ..exceptions import InputError
from ..io import IMAGE_EXTENSIONS, is_video, list_images
from ..io.paths import unique_names
from ..io.text import read_user_text

MANIFEST_COLUMNS = ("path",)


@dataclass(frozen=True)
class ArchiveInput:
    """One video file or one folder of frames (in natural order)."""

    id: str  # names its outputs: OUT/<id>/...
    path: str
    kind: str  # "video" or "frames"

    def fingerprint(self) -> dict[str, int]:
        """Size and modification time (of the file, or summed/maxed over the folder's frames)."""
        path = Path(self.path)
        if self.kind == "video":
            stat = path.stat()
            return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        stats = [p.stat() for p in list_images(path)]
        return {"size": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
                "frames": len(stats)}


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def _from_tree(root: Path) -> list[ArchiveInput]:
    found: list[ArchiveInput] = []
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    for folder in folders:
        if _has_images(folder):
            rel = folder.relative_to(root).as_posix()
            found.append(ArchiveInput(rel if rel != "." else root.name, str(folder), "frames"))
    for video in sorted(p for p in root.rglob("*") if p.is_file() and is_video(p)):
        found.append(ArchiveInput(video.relative_to(root).with_suffix("").as_posix(), str(video), "video"))
    return sorted(found, key=lambda item: item.path)  # the archive's own order, whatever the kind


def _from_manifest(manifest: Path) -> list[ArchiveInput]:
    with io.StringIO(read_user_text(manifest), newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise InputError(f"{manifest}: a manifest is a CSV with a header holding a 'path' column "
                             "(and optionally 'id'), one video or frame folder per row.")
        rows = [(reader.line_num, row) for row in reader]  # line_num: the file's line, blank lines counted
    found, problems = [], []
    for line, row in rows:
        text = (row.get("path") or "").strip()
        path = Path(text).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not text:
            problems.append(f"line {line}: empty path")
        elif path.is_dir():
            found.append(ArchiveInput(row.get("id") or text, str(path), "frames"))
        elif path.is_file() and is_video(path):
            found.append(ArchiveInput(row.get("id") or str(Path(text).with_suffix("")), str(path), "video"))
        elif path.exists():
            problems.append(f"line {line}: {text} is neither a video nor a folder of frames")
        else:
            problems.append(f"line {line}: {text} does not exist")
    if problems:
        raise InputError(f"{manifest}: {len(problems)} bad row(s): {'; '.join(problems[:5])}"
                         f"{' ...' if len(problems) > 5 else ''}. Fix or remove them before the job starts.")
    return found


def discover_inputs(source: str | Path) -> list[ArchiveInput]:
    """The inputs of a folder tree (videos anywhere below it, and folders that hold frames) or of a
    manifest CSV (``path`` column, optional ``id``; relative paths are relative to the CSV)."""
    source = Path(source).expanduser()
    if source.is_dir():
        found = _from_tree(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        found = _from_manifest(source)
    elif source.is_file() and is_video(source):
        found = [ArchiveInput(source.stem, str(source), "video")]
    else:
        raise InputError(f"{source} is neither a folder, a video nor a manifest .csv; pass the archive's root "
                         "folder or a CSV with a 'path' column.")
    if not found:
        raise InputError(f"{source} holds no videos ({', '.join(('mp4', 'avi', 'mov', 'mkv', 'ts'))}, ...) and no "
                         "folders of frames.")
    raw = [item.id for item in found]  # as the user wrote them; their outputs are named from sanitised ids
    duplicates = sorted({i for i in raw if raw.count(i) > 1})
    if duplicates:
        raise InputError(f"two inputs would write to the same output folder {duplicates[:3]}; give them distinct "
                         "'id' values in a manifest.")
    return [replace(item, id=name) for item, name in zip(found, unique_names(raw))]
