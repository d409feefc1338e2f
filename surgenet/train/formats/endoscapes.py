"""Endoscapes2023 (Murali et al., arXiv:2312.12429; CAMMA): segmentation and critical view of safety.

Two layouts are read.

**Flat layout** (one folder per split, e.g. ``endoscapes/train``): ``images/<video>_<frame>.jpg``,
``masks/<video>_<frame>.png`` (one channel, ids 0..6, 255 = unlabelled) and ``cvs.csv`` with the
columns ``file,video,c1,c2,c3`` (each criterion the mean of three experts' 0/1 votes).

**Release layout** (``endoscapes.zip`` as CAMMA publishes it, README of CAMMA-public/Endoscapes):
PATH is one split folder (``train``, ``val``, ``test``, ``train_seg``, ``val_seg``, ``test_seg``)
holding ``<video>_<frame>.jpg`` frames and ``annotation_coco.json``; its parent holds
``all_metadata.csv``, ``semseg/<video>_<frame>.png`` and ``<split>_vids.txt``.

* segmentation: the frames listed in the split's ``annotation_coco.json`` (``images[].file_name``)
  with their ``semseg`` mask. The release documents these masks as 480x854x3 with three identical
  channels holding the class id; a mask whose channels differ is an error. In a ``*_seg`` split
  every listed frame must have a mask; in the other splits (Endoscapes-BBox201, of which only
  the Seg50 frames have masks) frames without one are left out.
* cvs: ``all_metadata.csv`` (columns ``vid``, ``frame``, ``C1``, ``C2``, ``C3``, ``is_ds_keyframe``,
  ``cvs_annotator_1..3``, ...). The rows used are the keyframes (``is_ds_keyframe`` True, i.e.
  the frames the three experts annotated; the other rows carry labels propagated from the last
  keyframe) of the split's videos. The split's videos are those of ``<split>_vids.txt`` when it
  exists, otherwise those of the frames in the folder.

Decisions where the public documentation is silent (ours):

* ``cvs_annotator_k`` is read as a list of three 0/1 votes (``"[0, 1, 0]"``, the form that public
  code parses); the target is the mean of the three annotators' votes per criterion. Where the
  ``C1..C3`` columns exist they must agree with that mean within 0.01, otherwise the row is
  reported, since one of the two would be wrong.
* a keyframe of the split whose frame is missing from the split folder is an error (the CVS frames
  are in ``train/``, ``val/``, ``test/``; the ``*_seg`` folders hold only the segmented frames).
* ``seg_label_map.txt`` is not parsed: the seven class names below are the release's ids 0..6.
* the undocumented id 7 (and any id above 6 other than 255) becomes 255, with one warning.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import numpy as np

from ...exceptions import InputError
from ...io.text import read_user_text
from ...label_sets import CVS_CRITERIA, ENDOSCAPES_CLASSES
from .base import (LabelDataset, RawDataset, SegmentationDataset, check_task, images_with_masks, parse_float,
                   parse_int,
                   read_delimited, read_header, require_file, sorted_images)

logger = logging.getLogger(__name__)

NAME = "endoscapes"
DESCRIPTION = ("Endoscapes2023: images/ + masks/ + cvs.csv (flat layout) or a release split folder "
               "(annotation_coco.json, ../semseg, ../all_metadata.csv); segmentation, cvs")
TASKS = ("segmentation", "cvs")
CLASS_NAMES = list(ENDOSCAPES_CLASSES)
CRITERIA = list(CVS_CRITERIA)
SHARED_COLUMNS = ["file", "video", "c1", "c2", "c3"]
ANNOTATORS = ("cvs_annotator_1", "cvs_annotator_2", "cvs_annotator_3")


def _shared_root(path: Path) -> Path | None:
    """The split folder of the shared layout that ``path`` names (the folder or its cvs.csv)."""
    root = path.parent if path.is_file() and path.name == "cvs.csv" else path
    if (root / "cvs.csv").is_file() and read_header(root / "cvs.csv")[:5] == SHARED_COLUMNS:
        return root
    return None


def _release_split(path: Path) -> Path | None:
    if path.is_dir() and (path / "annotation_coco.json").is_file():
        return path
    return None


def _release_root(path: Path) -> bool:
    return path.is_dir() and (path / "all_metadata.csv").is_file() and \
        any((path / s / "annotation_coco.json").is_file() for s in ("train", "train_seg", "val", "val_seg"))


def detect(path: Path) -> bool:
    """The shared layout (a ``cvs.csv`` with ``file,video,c1,c2,c3``), a release split folder, or
    the release root (which is then refused with the split folders to name)."""
    return _shared_root(path) is not None or _release_split(path) is not None or _release_root(path)


def open_dataset(path: Path, task: str) -> RawDataset:
    check_task(NAME, task, TASKS)
    shared = _shared_root(path)
    if shared is not None:
        return _shared_segmentation(shared) if task == "segmentation" else _shared_cvs(shared)
    split = _release_split(path)
    if split is not None:
        return _release_segmentation(split) if task == "segmentation" else _release_cvs(split)
    if _release_root(path):
        split = "train_seg" if task == "segmentation" else "train"
        raise InputError(f"{path} is the Endoscapes release root; pass one split folder, e.g. {path / split} "
                         "(segmentation: train_seg, val_seg, test_seg; cvs: train, val, test).")
    raise InputError(f"{path} is not an Endoscapes folder: it needs images/, masks/ and cvs.csv "
                     "(file,video,c1,c2,c3), or be a release split folder with annotation_coco.json.")


# -- shared layout -----------------------------------------------------------------------------------

def _shared_segmentation(root: Path) -> SegmentationDataset:
    images, masks = images_with_masks(
        root, "needs images/ and masks/ for segmentation (masks/<stem>.png per image).")
    ds = SegmentationDataset(CLASS_NAMES, images, masks, source=str(root))
    ds.format = NAME
    return ds


def _shared_cvs(root: Path) -> LabelDataset:
    table = root / "cvs.csv"
    rows = iter(read_delimited(table))
    next(rows, None)  # header, checked by detect
    paths, labels, videos = [], [], []
    for line, fields in rows:
        where = f"{table} line {line}"
        if len(fields) != len(SHARED_COLUMNS):
            raise InputError(f"{where}: {len(fields)} columns, expected {len(SHARED_COLUMNS)} "
                             f"({','.join(SHARED_COLUMNS)}).")
        paths.append(require_file(root / "images" / fields[0], where))
        videos.append(fields[1])
        labels.append([parse_float(x, f"{where}, column {c}") for x, c in zip(fields[2:], SHARED_COLUMNS[2:])])
    ds = LabelDataset("cvs", CRITERIA, paths, np.asarray(labels, np.float32).reshape(-1, 3))
    ds.format, ds.video_ids = NAME, videos
    return ds


# -- release layout ----------------------------------------------------------------------------------

def _coco_images(split: Path) -> list[tuple[int, str]]:
    """``(entry index, file_name)`` of ``annotation_coco.json``'s ``images``."""
    path = split / "annotation_coco.json"
    try:
        data = json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from exc
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise InputError(f"{path} has no COCO 'images' list; is it an Endoscapes annotation file?")
    out = []
    for i, entry in enumerate(images):
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise InputError(f"{path}: images[{i}] has no file_name.")
        out.append((i, name))
    return out


def _release_segmentation(split: Path) -> SegmentationDataset:
    semseg = split.parent / "semseg"
    if not semseg.is_dir():
        raise InputError(f"{split.parent} has no semseg/ folder of segmentation masks (release layout).")
    strict = split.name.endswith("_seg")
    images, masks, skipped = [], [], 0
    for i, name in _coco_images(split):
        where = f"{split / 'annotation_coco.json'} images[{i}]"
        image = require_file(split / name, where)
        mask = semseg / f"{Path(name).stem}.png"
        if not mask.is_file():
            if strict:
                raise InputError(f"{where}: {name} has no mask {mask}.")
            skipped += 1
            continue
        images.append(image)
        masks.append(mask)
    if not images:
        raise InputError(f"no frame of {split} has a mask in {semseg}; segmentation uses the *_seg splits "
                         "(train_seg, val_seg, test_seg).")
    if skipped:
        logger.info("%s: %d frames without a semseg mask left out", split, skipped)
    ds = SegmentationDataset(CLASS_NAMES, images, masks, source=str(split))
    ds.format = NAME
    return ds


def _split_videos(split: Path) -> set[int]:
    listing = split.parent / f"{split.name}_vids.txt"
    if listing.is_file():
        return {parse_int(fields[0], f"{listing} line {line}") for line, fields in read_delimited(listing)}
    videos = set()
    for image in sorted_images(split):
        head = image.stem.split("_")[0]
        if head.isdigit():
            videos.add(int(head))
    return videos


def _votes(text: str, where: str) -> list[int]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(v in (0, 1) for v in value)):
        raise InputError(f"{where}: {text!r} is not a list of three 0/1 votes like [0, 1, 0].")
    return [int(v) for v in value]


def _release_cvs(split: Path) -> LabelDataset:
    table = split.parent / "all_metadata.csv"
    if not table.is_file():
        raise InputError(f"{split.parent} has no all_metadata.csv (the CVS votes of the release).")
    rows = iter(read_delimited(table))
    _, header = next(rows, (0, []))
    column = {name: i for i, name in enumerate(header)}
    missing = [c for c in ("vid", "frame", *ANNOTATORS) if c not in column]
    if missing:
        raise InputError(f"{table} lacks the column(s) {', '.join(missing)} (Endoscapes all_metadata.csv).")
    videos = _split_videos(split)
    paths, labels = [], []
    for line, fields in rows:
        where = f"{table} line {line}"
        if len(fields) != len(header):
            raise InputError(f"{where}: {len(fields)} columns, expected {len(header)} as in the header.")
        if "is_ds_keyframe" in column:
            keyframe = fields[column["is_ds_keyframe"]].lower() in ("true", "1")
        else:
            keyframe = all(fields[column[a]] for a in ANNOTATORS)
        if not keyframe:
            continue
        vid = parse_int(fields[column["vid"]], f"{where}, column vid")
        if vid not in videos:
            continue
        frame = parse_int(fields[column["frame"]], f"{where}, column frame")
        votes = np.array([_votes(fields[column[a]], f"{where}, column {a}") for a in ANNOTATORS], np.float32)
        mean = votes.mean(axis=0)
        for k, name in enumerate(("C1", "C2", "C3")):
            if name in column and abs(parse_float(fields[column[name]], f"{where}, column {name}") - mean[k]) > 0.01:
                raise InputError(f"{where}: {name} = {fields[column[name]]} but the annotators' votes average "
                                 f"{mean[k]:.4f}.")
        paths.append(require_file(split / f"{vid}_{frame}.jpg", f"{where} (keyframe of video {vid} in {split.name})"))
        labels.append(mean)
    if not paths:
        raise InputError(f"{table} has no CVS keyframe of the videos in {split}.")
    order = sorted(range(len(paths)), key=lambda i: tuple(int(x) for x in paths[i].stem.split("_")))
    ds = LabelDataset("cvs", CRITERIA, [paths[i] for i in order], np.asarray(labels, np.float32)[order])
    ds.format = NAME
    return ds
