"""surgenet's own plain layouts (those of ``surgenet-train finetune`` before the field's formats).

* segmentation: a folder with ``images/`` and ``masks/``; each mask is a PNG with its image's stem
  (``images/a.jpg`` -> ``masks/a.png``) holding one class id per pixel, 255 = ignore. The class
  names come from ``class_names`` when given, else from ``classes.txt`` in the folder (one name
  per line), else they are ``class_0 .. class_K`` for the largest id K found in the masks. With a
  class list, ids beyond it become 255 with one warning.
* cvs: a CSV with the header ``image,c1,c2,c3`` (image paths relative to the CSV; per-criterion
  probabilities or 0/1 labels). PATH is the CSV, or a folder holding exactly one such CSV.
* phase: a folder of per-video CSVs (or one CSV) with the header ``frame,phase``, one row per frame
  in temporal order; ``frame`` is a path relative to the CSV, ``phase`` an index or one of
  ``class_names``. Each CSV is one video (its stem is the name) in ``videos``; ``PATH#v1,v2``
  keeps only those CSVs.

Detection: this is the generic fallback; a folder that a field format also recognises (the
Endoscapes flat layout also has images/ and masks/) is read by that format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...exceptions import InputError
from ...io.text import read_user_text
from ..data.labelled import PhaseVideo
from .base import (LabelDataset, RawDataset, SegmentationDataset, check_task, images_with_masks, parse_float,
                   parse_int,
                   read_delimited, read_header, require_file, select_videos)

NAME = "folder"
DESCRIPTION = ("surgenet's plain layouts: images/ + masks/ (segmentation), an image,c1,c2,c3 CSV (cvs), "
               "per-video frame,phase CSVs (phase)")
TASKS = ("segmentation", "cvs", "phase")
CVS_COLUMNS = ["image", "c1", "c2", "c3"]
PHASE_COLUMNS = ["frame", "phase"]


def _csvs(path: Path, columns: list[str]) -> list[Path]:
    if path.is_file():
        return [path] if read_header(path)[: len(columns)] == columns else []
    if path.is_dir():
        return [p for p in sorted(path.glob("*.csv")) if read_header(p)[: len(columns)] == columns]
    return []


def detect(path: Path) -> bool:
    return ((path / "images").is_dir() and (path / "masks").is_dir()) or bool(_csvs(path, CVS_COLUMNS)) \
        or bool(_csvs(path, PHASE_COLUMNS))


def open_dataset(path: Path, task: str, class_names: Sequence[str] | None = None,
                 videos: Sequence[str] | None = None) -> RawDataset:
    check_task(NAME, task, TASKS)
    if videos is not None and task != "phase":
        raise InputError(f"{path}: only the folder format's phase CSVs are videos to select, not {task} data.")
    if task == "segmentation":
        return _segmentation(path, class_names)
    if task == "cvs":
        return _cvs(path)
    return _phase(path, class_names, videos)


def _segmentation(root: Path, class_names: Sequence[str] | None) -> SegmentationDataset:
    images, masks = images_with_masks(
        root, "must hold images/ and masks/ (PNG class-index masks with the image stems).")
    if class_names is None and (root / "classes.txt").is_file():
        class_names = [x.strip() for x in read_user_text(root / "classes.txt").splitlines() if x.strip()]
    if class_names is not None:
        ds = SegmentationDataset(class_names, images, masks, source=str(root))
    else:  # every id below 255 is a class; the list ends at the largest id present
        ds = SegmentationDataset([f"class_{i}" for i in range(255)], images, masks, source=str(root))
        present = np.flatnonzero(ds.value_counts[:255])
        ds.set_class_names([f"class_{i}" for i in range(int(present.max()) + 1 if present.size else 1)])
    ds.format = NAME
    return ds


def _cvs(path: Path) -> LabelDataset:
    tables = _csvs(path, CVS_COLUMNS)
    if len(tables) != 1:
        found = f"{len(tables)} such CSVs" if tables else "none"
        raise InputError(f"{path}: the cvs task needs one CSV with the header image,c1,c2,c3 (found {found}); "
                         "pass the CSV itself.")
    table = tables[0]
    rows = iter(read_delimited(table))
    next(rows, None)
    paths, labels = [], []
    for line, fields in rows:
        where = f"{table} line {line}"
        if len(fields) != len(CVS_COLUMNS):
            raise InputError(f"{where}: {len(fields)} columns, expected {len(CVS_COLUMNS)} ({','.join(CVS_COLUMNS)}).")
        paths.append(require_file(table.parent / fields[0], where))
        labels.append([parse_float(x, f"{where}, column {c}") for x, c in zip(fields[1:], CVS_COLUMNS[1:])])
    ds = LabelDataset("cvs", ["c1", "c2", "c3"], paths, np.asarray(labels, np.float32).reshape(-1, 3))
    ds.format = NAME
    return ds


def _phase(path: Path, class_names: Sequence[str] | None, videos: Sequence[str] | None = None) -> LabelDataset:
    tables = _csvs(path, PHASE_COLUMNS)
    if not tables:
        raise InputError(f"{path} holds no CSV with the header frame,phase (one per video) for the phase task.")
    keep = set(select_videos([t.stem for t in tables], videos, path))
    tables = [t for t in tables if t.stem in keep]
    index = {n: i for i, n in enumerate(class_names or ())}
    videos = []
    for table in tables:
        rows = iter(read_delimited(table))
        next(rows, None)
        frames, phases = [], []
        for line, fields in rows:
            where = f"{table} line {line}"
            if len(fields) != 2:
                raise InputError(f"{where}: {len(fields)} columns, expected 2 (frame,phase).")
            frames.append(require_file(table.parent / fields[0], where))
            value = fields[1]
            if value in index:
                phases.append(index[value])
            elif value.lstrip("-").isdigit():
                phases.append(parse_int(value, where))
            else:
                raise InputError(f"{where}: phase {value!r} is neither an index nor one of the class names "
                                 f"({', '.join(index) or 'none given'}).")
            if phases[-1] < 0 or (class_names and phases[-1] >= len(class_names)):
                top = f"{len(class_names) - 1}" if class_names else "(no upper bound)"
                raise InputError(f"{where}: phase {value} is outside the phase ids 0..{top}.")
        videos.append(PhaseVideo(table.stem, frames, np.asarray(phases, np.int64)))
    phases = np.concatenate([v.phases for v in videos])
    names = list(class_names) if class_names else [f"phase_{i}" for i in range(int(phases.max(initial=0)) + 1)]
    ds = LabelDataset("phase", names, [f for v in videos for f in v.frames], phases)
    ds.format, ds.videos = NAME, videos
    return ds
