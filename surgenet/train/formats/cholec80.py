"""Cholec80 (Twinanda et al., EndoNet, IEEE TMI 2017; CAMMA): phase and tool presence.

Layout (the release's, plus the extracted frames): PATH holds the annotation files, in it or up to
two folders below it (the release has ``phase_annotations/videoNN-phase.txt`` and
``tool_annotations/videoNN-tool.txt``), and the frames of each video in ``frames/videoNN/NNNNNN.jpg``
(or ``videoNN/NNNNNN.jpg``), as

    surgenet-train extract-frames PATH/videos PATH/frames --fps 1

writes them: NNNNNN is the index of the frame in the 25 fps video (see
:mod:`surgenet.train.formats.frame_index`), the number in the annotation files' ``Frame`` column, so
frames and labels are matched by that number.

* ``videoNN-phase.txt``: tab-separated, header ``Frame<TAB>Phase``, one row per frame at 25 fps, the
  phase a name (Preparation, CalotTriangleDissection, ClippingCutting, GallbladderDissection,
  GallbladderPackaging, CleaningCoagulation, GallbladderRetraction) or an id 0..6.
* ``videoNN-tool.txt``: tab-separated, header ``Frame`` + 7 tool columns (Grasper, Bipolar, Hook,
  Scissors, Clipper, Irrigator, SpecimenBag), 0/1, one row per second (Frame 0, 25, 50, ...).

Phase items are the extracted frames with a phase row; tools items the extracted frames with a
tool row (at 1 fps: every frame). ``videos`` (phase timelines in temporal order) is set for both
tasks (for tools, where the phase files are present too). Extracted frames without a row are left out (counted in the
log). ``PATH#video01,video02`` keeps those videos only. Frame files must be named by frame index; other names (e.g. ``video01_000001.jpg``) are an
error that says to extract again.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ...exceptions import InputError
from ...io.images import IMAGE_EXTENSIONS
from ..data.labelled import PhaseVideo
from .base import LabelDataset, RawDataset, check_task, parse_int, read_delimited, select_videos

logger = logging.getLogger(__name__)

NAME = "cholec80"
DESCRIPTION = ("Cholec80: videoNN-phase.txt / videoNN-tool.txt over frames/videoNN/NNNNNN.jpg "
               "(surgenet-train extract-frames); phase, tools")
TASKS = ("phase", "tools")
PHASES = ["Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
          "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction"]
TOOLS = ["Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag"]
_FRAME_FILE = re.compile(r"^\d+$")


def _annotations(path: Path, kind: str) -> dict[str, Path]:
    """``video -> annotation file`` for the ``*-<kind>.txt`` files in PATH or up to two folders below
    (not deeper, so that the frame folders are not walked)."""
    suffix = f"-{kind}.txt"
    if not path.is_dir():
        return {}
    found = sorted(p for pattern in (f"*{suffix}", f"*/*{suffix}", f"*/*/*{suffix}") for p in path.glob(pattern))
    files: dict[str, Path] = {}
    for p in found:
        video = p.name[: -len(suffix)]
        if video in files:
            raise InputError(f"two {kind} annotation files for {video}: {files[video]} and {p}; keep one.")
        files[video] = p
    return dict(sorted(files.items()))


def detect(path: Path) -> bool:
    return bool(_annotations(path, "phase") or _annotations(path, "tool"))


def _frame_folder(root: Path, video: str) -> Path:
    for folder in (root / "frames" / video, root / video):
        if folder.is_dir():
            return folder
    raise InputError(f"no frames of {video} in {root / 'frames' / video}; extract them with "
                     f"`surgenet-train extract-frames {root / 'videos'} {root / 'frames'} --fps 1`.")


def _frames(folder: Path) -> dict[int, Path]:
    frames = {}
    for p in folder.iterdir():
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if not _FRAME_FILE.match(p.stem):
            raise InputError(f"{p} is not named by frame index (NNNNNN.jpg); extract the frames again with "
                             "`surgenet-train extract-frames` into a new folder.")
        frames[int(p.stem)] = p
    if not frames:
        raise InputError(f"{folder} holds no frames; extract them with `surgenet-train extract-frames`.")
    return frames


def _read_phases(path: Path) -> dict[int, int]:
    index = {n.lower(): i for i, n in enumerate(PHASES)}
    rows = iter(read_delimited(path, "\t"))
    line, header = next(rows, (1, []))
    if [h.lower() for h in header] != ["frame", "phase"]:
        raise InputError(f"{path} line {line}: header {header} is not Frame<TAB>Phase.")
    phases = {}
    for line, fields in rows:
        where = f"{path} line {line}"
        if len(fields) != 2:
            raise InputError(f"{where}: {len(fields)} columns, expected 2 (Frame<TAB>Phase).")
        frame = parse_int(fields[0], f"{where}, Frame")
        value = fields[1]
        if value.lower() in index:
            phases[frame] = index[value.lower()]
        elif value.isdigit() and int(value) < len(PHASES):
            phases[frame] = int(value)
        else:
            raise InputError(f"{where}: phase {value!r} is not one of {', '.join(PHASES)} (or 0..6).")
    return phases


def _read_tools(path: Path) -> dict[int, np.ndarray]:
    rows = iter(read_delimited(path, "\t"))
    line, header = next(rows, (1, []))
    if [h.lower() for h in header] != ["frame"] + [t.lower() for t in TOOLS]:
        raise InputError(f"{path} line {line}: header {header} is not Frame + {' '.join(TOOLS)} (tab-separated).")
    tools = {}
    for line, fields in rows:
        where = f"{path} line {line}"
        if len(fields) != len(header):
            raise InputError(f"{where}: {len(fields)} columns, expected {len(header)} (Frame + 7 tools).")
        values = [parse_int(x, f"{where}, {name}") for x, name in zip(fields[1:], TOOLS)]
        if any(v not in (0, 1) for v in values):
            raise InputError(f"{where}: tool presence must be 0 or 1, got {fields[1:]}.")
        tools[parse_int(fields[0], f"{where}, Frame")] = np.array(values, np.float32)
    return tools


def _tool_videos(root: Path, paths: list[Path]) -> list[PhaseVideo]:
    """The phase timelines of the tools items' videos, where the phase files are there too."""
    phase_files = _annotations(root, "phase")
    videos = []
    for video in dict.fromkeys(p.parent.name for p in paths):
        if video in phase_files:
            table = _read_phases(phase_files[video])
            frames = [p for p in paths if p.parent.name == video and int(p.stem) in table]
            videos.append(PhaseVideo(video, frames, np.array([table[int(p.stem)] for p in frames], np.int64)))
    return videos


def open_dataset(path: Path, task: str, videos: Sequence[str] | None = None) -> RawDataset:
    check_task(NAME, task, TASKS)
    kind = "phase" if task == "phase" else "tool"
    files = _annotations(path, kind)
    if not files:
        raise InputError(f"{path} holds no videoNN-{kind}.txt (Cholec80 {kind} annotations).")
    files = {v: files[v] for v in select_videos(list(files), videos, path)}
    paths, labels, videos, skipped = [], [], [], 0
    for video, label_file in files.items():
        table = _read_phases(label_file) if task == "phase" else _read_tools(label_file)
        frames = _frames(_frame_folder(path, video))
        kept = sorted(f for f in frames if f in table)
        skipped += len(frames) - len(kept)
        if not kept:
            raise InputError(f"no frame of {video} has a row in {label_file}; the frames must be named by frame "
                             "index at the video's own rate (surgenet-train extract-frames).")
        paths += [frames[f] for f in kept]
        labels += [table[f] for f in kept]
        if task == "phase":
            videos.append(PhaseVideo(video, [frames[f] for f in kept], np.array([table[f] for f in kept], np.int64)))
    if skipped:
        logger.info("%s: %d extracted frames have no %s row and are left out", path, skipped, kind)
    if task == "phase":
        ds = LabelDataset("phase", PHASES, paths, np.array(labels, np.int64))
        ds.videos = videos
    else:
        ds = LabelDataset("tools", TOOLS, paths, np.stack(labels))
        ds.videos = _tool_videos(path, paths)
    ds.format = NAME
    return ds
