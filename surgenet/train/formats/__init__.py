"""Readers for the surgical datasets' own formats, one module per format, behind one call.

>>> ds = open_dataset("endoscapes:data/endoscapes/train", "segmentation")
>>> image, mask = ds[0]          # PIL RGB image, int64 (H, W) class ids (255 = ignore)

``spec`` is ``FORMAT:PATH`` or a bare ``PATH`` whose format is recognised from its files. The
field's formats (endoscapes, cholect50, cholec80, cholecseg8k, csv) are tried first; ``folder``
(surgenet's plain layouts) is the fallback when none of them recognises the path. A path that two
field formats recognise, or none, is an InputError that names the candidates and the
``FORMAT:PATH`` syntax. ``PATH#V1,V2`` keeps only those videos of a video format (video-wise
splits). Every label file is checked when the dataset is opened, before training.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Sequence

from ...exceptions import InputError
from .base import IGNORE_INDEX, TASKS, LabelDataset, RawDataset, SegmentationDataset

FIELD_FORMATS = ("endoscapes", "cholect50", "cholec80", "cholecseg8k", "csv")
FALLBACK = "folder"
VIDEO_FORMATS = ("cholect50", "cholec80", "folder")  # those that select videos with PATH#V1,V2
_MODULES = {"endoscapes": "endoscapes", "cholect50": "cholect50", "cholec80": "cholec80",
            "cholecseg8k": "cholecseg8k", "csv": "plain_csv", "folder": "folder"}


def _module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def list_formats() -> dict[str, str]:
    """Format name -> one-line description (for ``--help``)."""
    return {name: _module(name).DESCRIPTION for name in (*FIELD_FORMATS, FALLBACK)}


def format_tasks(name: str) -> tuple[str, ...]:
    """The tasks a format has labels for."""
    return tuple(_module(name).TASKS)


def parse_spec(spec: str | os.PathLike) -> tuple[str | None, Path, list[str] | None]:
    """``"FORMAT:PATH#V1,V2"`` -> ``(FORMAT, PATH, [V1, V2])``; FORMAT and ``#videos`` are optional."""
    text = os.fspath(spec)
    head, sep, rest = text.partition(":")
    name = None
    if sep and head.lower() in _MODULES:
        name, text = head.lower(), rest
    elif sep and head.isidentifier() and len(head) > 1 and not Path(text).exists():
        raise InputError(f"unknown dataset format {head!r} in {text!r}; formats: {', '.join(_MODULES)} "
                         "(FORMAT:PATH), or a bare PATH to detect the format.")
    videos = None
    if "#" in text and not Path(text).expanduser().exists():
        text, _, selection = text.rpartition("#")
        videos = [v.strip() for v in selection.split(",") if v.strip()]
        if not videos:
            raise InputError(f"{os.fspath(spec)!r}: name the videos after '#', e.g. PATH#VID68,VID70.")
    return name, Path(text).expanduser(), videos


def detect_format(path: str | os.PathLike) -> str:
    """The one format that recognises ``path`` (field formats first, then ``folder``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset path {path} does not exist.")
    found = [name for name in FIELD_FORMATS if _module(name).detect(path)]
    if len(found) > 1:
        raise InputError(f"{path} looks like several dataset formats ({', '.join(found)}); name one as "
                         f"FORMAT:PATH, e.g. {found[0]}:{path}.")
    if found:
        return found[0]
    if _module(FALLBACK).detect(path):
        return FALLBACK
    raise InputError(f"cannot tell the dataset format of {path}; name it as FORMAT:PATH with FORMAT one of "
                     f"{', '.join(_MODULES)} (surgenet-train finetune --help describes each layout).")


def open_dataset(spec: str | os.PathLike, task: str, *, class_names: Sequence[str] | None = None,
                 videos: Sequence[str] | None = None) -> RawDataset:
    """Open a labelled dataset for ``task`` (segmentation, cvs, phase or tools).

    Args:
        spec: ``FORMAT:PATH`` (FORMAT one of :func:`list_formats`) or a bare PATH (auto-detected);
            ``PATH#V1,V2`` keeps only those videos of a video format (a video-wise split, e.g.
            ``cholect50:data/cholect50#VID68,VID70``).
        task: the task whose labels to read; a format without them is an InputError.
        class_names: names for formats that carry none (``folder``, ``csv``): segmentation class
            names (ids beyond them become 255) or phase names (CSV phases may then be names).
        videos: the same selection as ``#V1,V2``, as a list.

    Returns:
        a :class:`RawDataset`: ``ds[i] -> (PIL RGB image, target)``, with ``task``, ``class_names``
        and ``paths``; video formats add ``videos`` (temporal order), tools adds ``labels``.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    name, path, selected = parse_spec(spec)
    if selected is not None and videos is not None:
        raise InputError(f"{os.fspath(spec)!r} selects videos with '#' and videos= is given too; use one.")
    selected = list(videos) if videos is not None else selected
    if not path.exists():
        raise InputError(f"dataset path {path} does not exist.")
    if name is None:
        name = detect_format(path)
    module = _module(name)
    kwargs: dict = {}
    if name in ("folder", "csv"):
        kwargs["class_names"] = class_names
    if selected is not None:
        if name not in VIDEO_FORMATS:
            raise InputError(f"the {name} format has no videos to select ('#{','.join(selected)}'); only "
                             f"{', '.join(VIDEO_FORMATS)} do (folder: its per-video phase CSVs).")
        kwargs["videos"] = selected
    return module.open_dataset(path, task, **kwargs)


__all__ = ["IGNORE_INDEX", "LabelDataset", "RawDataset", "SegmentationDataset", "TASKS", "detect_format",
           "format_tasks", "list_formats", "open_dataset", "parse_spec"]
