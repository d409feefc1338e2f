"""Writing an archive job's results: per input as ``surgenet predict`` does, one Parquet table per run.

Per input, ``OUT/<id>/`` holds ``masks/<frame>.png`` (segmentation) or ``predictions.csv``
(phase, CVS, tools); embeddings go only to the table. Each input's folder is written under a
temporary name and renamed when complete, its table rows go to ``OUT/.parts/<id>.parquet``; the
run's ``OUT/predictions.parquet`` (or ``embeddings.parquet``) joins the parts at the end.
A killed job leaves no half-written input behind.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_target
from ..io.paths import inside, safe_name
from ..tasks import MULTI_LABEL_TASKS
from .inputs import ArchiveInput
from .schema import conform, table_schema

PARTS = ".parts"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        from ..exceptions import InputError

        raise InputError('archive jobs write Parquet with pyarrow: pip install "surgenet[video]".') from exc
    return pa, pq


def table_name(mode: str) -> str:
    return "embeddings.parquet" if mode == "embed" else "predictions.parquet"


def predictions_of(mode: str, values: np.ndarray, class_names: list[str], threshold: float = 0.5) -> list[str]:
    """The ``prediction`` column: the phase name, the criteria / tools met, or the mask file."""
    if mode == "phase":
        return [class_names[i] for i in values.argmax(axis=1)]
    if mode in MULTI_LABEL_TASKS:
        return ["|".join(n for n, p in zip(class_names, row) if p >= threshold) for row in values]
    return [""] * len(values)


def write_input(out: Path, item: ArchiveInput, mode: str, frames: dict[str, np.ndarray], values: np.ndarray,
                class_names: list[str], metadata: dict[str, Any], dtype: str = "float32") -> int:
    """All outputs of one input, atomically; returns the number of rows."""
    pa, pq = _pyarrow()
    order = np.argsort(frames["frame"], kind="stable")
    frames = {k: v[order] for k, v in frames.items()}
    values = values[order]
    names = [str(n) for n in frames["name"]]
    times = [None if np.isnan(t) else float(t) for t in frames["time"]]
    predictions = predictions_of(mode, values, class_names)
    inside(out, out / item.id)  # ids are sanitised; a planted symlink at OUT/<id> is refused too
    if mode != "embed":
        staging = out / f".{item.id}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if mode == "segmentation":
            (staging / "masks").mkdir()
            stems = [safe_name(name, "frame") for name in names]  # frame names are file stems: a.jpg, a.png
            files = [f"{s}-{int(i)}.png" if stems.count(s) > 1 else f"{s}.png" for s, i in zip(stems, frames["frame"])]
            for file, png in zip(files, frames["png"]):
                (staging / "masks" / file).write_bytes(png)
            predictions = [f"{item.id}/masks/{file}" for file in files]
        else:
            _write_csv(staging / "predictions.csv", [str(x) for x in frames["source"]], frames["frame"], times,
                       predictions, values, class_names)
        final = out / item.id
        if final.exists():  # outputs of an older run of a changed input
            shutil.rmtree(final)
        os.replace(staging, final)
    columns = {"video": [item.id] * len(names), "source": [str(x) for x in frames["source"]],
               "frame": frames["frame"].astype(np.int64), "name": names, "time": times}
    if mode == "embed":
        columns["embedding"] = list(values.astype(dtype))
    else:
        columns["prediction"] = predictions
        columns["probabilities"] = list(values.astype(np.float32))
    schema = table_schema(mode, dtype)  # declared, never inferred: a folder's null times join a video's
    table = pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
    table = table.replace_schema_metadata({"surgenet": json.dumps(metadata, default=str)})
    parts = out / PARTS
    parts.mkdir(parents=True, exist_ok=True)
    with atomic_target(inside(out, parts / f"{item.id}.parquet")) as tmp:
        pq.write_table(table, tmp)
    return len(names)


def _write_csv(target: Path, sources, frame_indices, times, predictions, values, class_names) -> None:
    """The columns of ``surgenet predict``'s CSV: frame, source, time_s, prediction, p_<class>."""
    header = ["frame", "source", "time_s", "prediction", *[f"p_{n}" for n in class_names]]
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for source, index, time, prediction, row in zip(sources, frame_indices, times, predictions, values):
            writer.writerow([int(index), source, "" if time is None else f"{time:.3f}", prediction,
                             *[f"{p:.6f}" for p in row]])


def join_parts(out: Path, ids: list[str], mode: str, dtype: str = "float32") -> Path | None:
    """``OUT/predictions.parquet``: the parts of ``ids`` (done inputs of this job), in input order,
    each cast to the declared schema (parts of older runs may hold a null-typed ``time``)."""
    pa, pq = _pyarrow()
    tables = [pq.read_table(out / PARTS / f"{i}.parquet") for i in ids if (out / PARTS / f"{i}.parquet").is_file()]
    if not tables:
        return None
    metadata = tables[-1].schema.metadata
    tables = [conform(t.replace_schema_metadata(None), mode, dtype) for t in tables]
    table = pa.concat_tables(tables).replace_schema_metadata(metadata)
    target = out / table_name(mode)
    with atomic_target(target) as tmp:
        pq.write_table(table, tmp)
    return target
