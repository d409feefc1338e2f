"""The plain ``<path>,<label>`` frame list of the SimCLR surgical-video tutorial (Cholec80 frames).

One row per frame, no header needed: ``frames/video01/1.jpg,0``; paths relative to the CSV (or
absolute), the label an integer class (e.g. the phase). It serves the frame classification task,
``phase``: items in file order, ``videos`` groups the rows by the frame's folder (one video per
folder, rows in file order). A first row whose label is not an integer and whose path is not an
image (``path,label``) is a header. Class names are ``class_names`` when given (labels may then be
names), else ``0 .. K`` for the largest label K.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...exceptions import InputError
from ...io.images import IMAGE_EXTENSIONS
from ..data.labelled import PhaseVideo
from .base import LabelDataset, RawDataset, check_task, read_delimited, require_file

NAME = "csv"
DESCRIPTION = "plain <path>,<label> CSV (SimCLR tutorial frame lists), paths relative to the CSV; phase"
TASKS = ("phase",)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def detect(path: Path) -> bool:
    """A ``.csv`` file whose first data row is ``<image path>,<integer>``."""
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return False
    try:
        rows = read_delimited(path)
        for _, fields in rows:
            if len(fields) == 2 and _is_int(fields[1]) and Path(fields[0]).suffix.lower() in IMAGE_EXTENSIONS:
                return True
            if len(fields) == 2 and not _is_int(fields[1]) and Path(fields[0]).suffix.lower() not in IMAGE_EXTENSIONS:
                if [f.lower() for f in fields] == ["frame", "phase"]:
                    return False  # the folder format's per-video phase CSV
                continue  # a header row
            return False
    except InputError:
        return False
    return False


def open_dataset(path: Path, task: str, class_names: Sequence[str] | None = None) -> RawDataset:
    check_task(NAME, task, TASKS)
    if not path.is_file():
        raise InputError(f"{path} is not a CSV file of <path>,<label> rows.")
    index = {n: i for i, n in enumerate(class_names or ())}
    paths, labels = [], []
    for n, (line, fields) in enumerate(read_delimited(path)):
        where = f"{path} line {line}"
        if len(fields) != 2:
            raise InputError(f"{where}: {len(fields)} columns, expected 2 (<path>,<label>).")
        image, label = fields
        if n == 0 and not _is_int(label) and label not in index and Path(image).suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # header
        if label in index:
            value = index[label]
        elif _is_int(label):
            value = int(label)
        else:
            raise InputError(f"{where}: label {label!r} is not an integer class"
                             + (f" nor one of {', '.join(index)}." if index else "."))
        if value < 0 or (class_names and value >= len(class_names)):
            top = f"0..{len(class_names) - 1}" if class_names else "0 or more"
            raise InputError(f"{where}: label {value} is outside the classes ({top}).")
        paths.append(require_file(path.parent / image, where))
        labels.append(value)
    if not paths:
        raise InputError(f"{path} lists no frames.")
    labels_array = np.array(labels, np.int64)
    names = list(class_names) if class_names else [str(i) for i in range(int(labels_array.max()) + 1)]
    ds = LabelDataset("phase", names, paths, labels_array)
    ds.format = NAME
    groups: dict[Path, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(p.parent, []).append(i)
    ds.videos = [PhaseVideo(folder.name, [paths[i] for i in rows], labels_array[rows])
                 for folder, rows in groups.items()]
    return ds
