"""CholecT50 (Nwoye et al., Rendezvous, MedIA 2022; CAMMA): phase, instrument presence, triplets.

Layout: PATH holds ``labels/VIDxx.json`` (the challenge format) and ``videos/VIDxx/NNNNNN.jpg``
(the frame whose number is the annotation key, zero-padded to six digits; ``.png`` also read).

``annotations["<frame>"]`` lists one row of 15 numbers per instrument instance: triplet id,
instrument id, instrument presence, instrument box x, y, w, h, verb id, target id, target
presence, target box x, y, w, h, phase id. Names come from the JSON's ``categories``
(``instrument``, ``phase``, ``triplet``). A frame is:

* a phase item when its rows give one phase id (a row whose phase is -1 or null gives none; two
  different phases in one frame is an error);
* a tools item whenever it is annotated: an instrument counts as present when a row has its id
  (not -1) with presence 1; rows of -1, null rows and an empty list mean no instrument;
* ``triplets`` holds the multi-hot triplet ids (-1 means none) of the items, ``triplet_names``
  their names.

Frames on disk without an annotation key have no label and are left out (counted in the log);
an annotation key without its frame is an error. Videos are read in the order of their names,
frames in increasing number (temporal order), which is the order of ``videos``. ``PATH#VID68,VID70``
keeps those videos only (a video-wise split).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ...exceptions import InputError
from ...io.images import IMAGE_EXTENSIONS
from ...io.text import read_user_text
from ..data.labelled import PhaseVideo
from .base import LabelDataset, RawDataset, check_task, select_videos

logger = logging.getLogger(__name__)

NAME = "cholect50"
DESCRIPTION = "CholecT50: labels/VIDxx.json (challenge format) + videos/VIDxx/NNNNNN.jpg; phase, tools (+ triplets)"
TASKS = ("phase", "tools")
ROW_LENGTH = 15
INSTRUMENT, PRESENCE, PHASE, TRIPLET = 1, 2, 14, 0


def _label_files(path: Path) -> list[Path]:
    folder = path / "labels" if (path / "labels").is_dir() else path
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def detect(path: Path) -> bool:
    """A folder with ``labels/*.json`` holding CholecT50 ``categories`` and ``annotations``."""
    files = _label_files(path) if (path / "labels").is_dir() else []
    if not files:
        return False
    head = files[0].read_text(encoding="utf-8", errors="replace")[:100_000]
    return '"annotations"' in head and '"instrument"' in head


def _load(path: Path) -> dict:
    try:
        data = json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), dict):
        raise InputError(f"{path} has no 'annotations' object; is it a CholecT50 label file?")
    categories = data.get("categories")
    if not isinstance(categories, dict) or not all(isinstance(categories.get(k), dict)
                                                   for k in ("instrument", "phase")):
        raise InputError(f"{path} has no categories.instrument and categories.phase.")
    return data


def _names(categories: dict, key: str, path: Path) -> list[str]:
    table = categories.get(key) or {}
    try:
        ids = sorted(int(k) for k in table)
    except ValueError as exc:
        raise InputError(f"{path}: categories.{key} has a non-integer id ({exc}).") from exc
    if ids != list(range(len(ids))):
        raise InputError(f"{path}: categories.{key} ids are not 0..{len(ids) - 1}.")
    return [str(table[str(i)]) for i in ids]


def _number(value, where: str) -> float:
    if value is None:
        return -1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InputError(f"{where}: {value!r} is not a number.")
    return float(value)


def _frame_image(folder: Path, frame: int) -> Path | None:
    for suffix in (".jpg", ".png", ".jpeg"):
        candidate = folder / f"{frame:06d}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class _Video:
    """One label file read and checked: per annotated frame its image, tools, triplets and phase."""

    def __init__(self, path: Path, videos_dir: Path, names: dict[str, list[str]] | None) -> None:
        data = _load(path)
        categories = data["categories"]
        self.names = {k: _names(categories, k, path) for k in ("instrument", "phase", "triplet")}
        if names is not None and self.names != names:
            raise InputError(f"{path}: its categories differ from those of the other label files.")
        self.name = path.stem
        folder = videos_dir / self.name
        if not folder.is_dir():
            raise InputError(f"{path}: no frame folder {folder} for video {self.name}.")
        n_tools, n_phases, n_triplets = (len(self.names[k]) for k in ("instrument", "phase", "triplet"))
        frames = []
        for key, rows in data["annotations"].items():
            where = f"{path}, annotations[{key!r}]"
            try:
                frame = int(key)
            except ValueError:
                raise InputError(f"{where}: the key is not a frame number.") from None
            if rows is None:
                rows = []
            if not isinstance(rows, list):
                raise InputError(f"{where}: expected a list of rows of {ROW_LENGTH} numbers.")
            tools = np.zeros(n_tools, np.float32)
            triplets = np.zeros(n_triplets, np.float32)
            phases = set()
            for r, row in enumerate(rows):
                at = f"{where} row {r}"
                if row is None:
                    continue
                if not isinstance(row, list) or len(row) != ROW_LENGTH:
                    size = len(row) if isinstance(row, list) else type(row).__name__
                    raise InputError(f"{at}: {size} values, expected {ROW_LENGTH} (triplet, instrument, presence, "
                                     "box x y w h, verb, target, presence, box x y w h, phase).")
                values = [_number(v, f"{at}, value {i}") for i, v in enumerate(row)]
                tool, present, phase, triplet = (int(values[i]) for i in (INSTRUMENT, PRESENCE, PHASE, TRIPLET))
                if not -1 <= tool < n_tools:
                    raise InputError(f"{at}: instrument id {tool} is not in categories.instrument (0..{n_tools - 1}).")
                if not -1 <= phase < n_phases:
                    raise InputError(f"{at}: phase id {phase} is not in categories.phase (0..{n_phases - 1}).")
                if not -1 <= triplet < max(n_triplets, 1):
                    raise InputError(f"{at}: triplet id {triplet} is not in categories.triplet.")
                if tool >= 0 and present == 1:
                    tools[tool] = 1.0
                if triplet >= 0 and n_triplets:
                    triplets[triplet] = 1.0
                if phase >= 0:
                    phases.add(phase)
            if len(phases) > 1:
                raise InputError(f"{where}: rows give different phases {sorted(phases)}.")
            image = _frame_image(folder, frame)
            if image is None:
                raise InputError(f"{where}: frame image {folder / f'{frame:06d}.jpg'} does not exist.")
            frames.append((frame, image, tools, triplets, phases.pop() if phases else -1))
        frames.sort(key=lambda f: f[0])
        self.frames = frames
        on_disk = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if on_disk > len(frames):
            logger.info("%s: %d frames in %s have no annotation and are left out", path.name,
                        on_disk - len(frames), folder)


def open_dataset(path: Path, task: str, videos: Sequence[str] | None = None) -> RawDataset:
    check_task(NAME, task, TASKS)
    files = _label_files(path)
    if not files:
        raise InputError(f"{path} has no labels/*.json (CholecT50 challenge label files).")
    keep = set(select_videos([f.stem for f in files], videos, path))
    files = [f for f in files if f.stem in keep]
    videos_dir = path / "videos"
    if not videos_dir.is_dir():
        raise InputError(f"{path} has no videos/ folder (frames as videos/VIDxx/NNNNNN.jpg).")
    parsed: list[_Video] = []
    for f in files:
        parsed.append(_Video(f, videos_dir, parsed[0].names if parsed else None))
    names = parsed[0].names
    if task == "phase":
        items = [(v, f) for v in parsed for f in v.frames if f[4] >= 0]
        class_names = names["phase"]
    else:
        items = [(v, f) for v in parsed for f in v.frames]
        class_names = names["instrument"]
    paths = [f[1] for _, f in items]
    if task == "phase":
        labels = np.array([f[4] for _, f in items], np.int64)
    else:
        labels = np.stack([f[2] for _, f in items]) if items else np.zeros((0, len(class_names)), np.float32)
    ds = LabelDataset(task, class_names, paths, labels)
    ds.format = NAME
    ds.frame_numbers = np.array([f[0] for _, f in items], np.int64)
    ds.video_names = [v.name for v, _ in items]
    ds.triplets = np.stack([f[3] for _, f in items])
    ds.triplet_names = names["triplet"]
    ds.tool_names = names["instrument"]
    ds.videos = [PhaseVideo(v.name, [f[1] for f in v.frames if f[4] >= 0],
                            np.array([f[4] for f in v.frames if f[4] >= 0], np.int64)) for v in parsed]
    return ds
