"""An archive job: inputs, a model, an engine; resumable, with failures reported, never fatal.

``run_job`` checks every input, skips those already done with the same model (``OUT/done.json``
keyed on each input's size and modification time and on the model's fingerprint), streams the
rest through an engine, writes each input's outputs as soon as its last frame is in, and joins
the run's Parquet table at the end. An unreadable input lands in ``OUT/failures.csv`` (status
``failed``) and the job goes on; a video that ends before the frames its container announces
keeps its rows and is listed there too (status ``partial``, with the frames expected and read).

An export folder's ``--backend auto`` is resolved once, here in the driver, after the inputs are
checked and before any is decoded (:func:`~surgenet.batch.spec.resolve_backend`); the choice goes
to ``on_choice``, into ``OUT/run.json`` (with every candidate's figures) and into the table's
metadata, and every worker opens the backend chosen.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..exceptions import InputError
from ..io.atomic import atomic_write_text
from .inputs import ArchiveInput, discover_inputs
from .outputs import join_parts, write_input
from .schema import FAILED, FAILURE_COLUMNS, PARTIAL
from .spec import ModelSpec

logger = logging.getLogger(__name__)
DONE_FILE, FAILURES_FILE, RUN_FILE = "done.json", "failures.csv", "run.json"
ENGINES = ("local", "ray")


@dataclass
class BatchJob:
    """What to run: ``source`` (folder tree, manifest CSV or one video) through ``spec`` into ``out``."""

    source: str
    spec: ModelSpec
    out: str
    fps: float | None = None
    batch_size: int = 8
    dtype: str = "float32"  # embeddings
    near_duplicates: float | None = None
    auto_frames: str | None = None  # --backend auto: the frames the candidates are judged on
    rebenchmark: bool = False  # --backend auto: measure again instead of reading the cache

    def __post_init__(self) -> None:
        if self.fps is not None and self.fps <= 0:
            raise InputError(f"--fps must be positive, got {self.fps}.")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if self.dtype not in ("float16", "float32"):
            raise InputError(f"--dtype must be float16 or float32, got {self.dtype}.")
        if self.near_duplicates is not None and not 0 < self.near_duplicates <= 1:
            raise InputError(f"--near-duplicates is a cosine similarity in (0, 1], got {self.near_duplicates}.")
        out = Path(self.out).expanduser()
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file; name a folder (it is created if missing).")


@dataclass
class JobReport:
    done: list[str] = field(default_factory=list)  # processed in this run
    skipped: list[str] = field(default_factory=list)  # already done with this model
    failed: dict[str, str] = field(default_factory=dict)  # nothing kept
    partial: dict[str, str] = field(default_factory=dict)  # done, but the video ended early (rows kept)
    frames: int = 0
    table: Path | None = None
    duplicates: Path | None = None
    backend: str = ""  # the backend the model ran on
    choice: Any = None  # how --backend auto picked it (surgenet.runtime.auto.Choice), else None


class _Collector:
    """Gathers the model's output rows per input; writes an input when its marker and all its rows are in."""

    def __init__(self, job: BatchJob, items: dict[str, ArchiveInput], finish: Callable[[ArchiveInput, dict, np.ndarray], None],
                 fail: Callable[[ArchiveInput, dict[str, Any]], None]) -> None:
        self.items, self.finish, self.fail = items, finish, fail
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.markers: dict[str, dict[str, Any]] = {}
        self.skipped_frames: dict[str, str] = {}

    def add(self, batch: dict[str, np.ndarray]) -> None:
        for i in range(len(batch["item"])):
            row = {key: value[i] for key, value in batch.items()}
            item_id = str(row["item"])
            if bool(row["marker"]):
                self.markers[item_id] = row
            else:
                self.rows.setdefault(item_id, []).append(row)
            self._maybe_finish(item_id)

    def _maybe_finish(self, item_id: str) -> None:
        marker = self.markers.get(item_id)
        rows = self.rows.get(item_id, [])
        if marker is None or len(rows) < int(marker["count"]):
            return
        item = self.items[item_id]
        self.markers.pop(item_id)
        self.rows.pop(item_id, None)
        if str(marker["skipped"]):
            self.skipped_frames[item_id] = str(marker["skipped"])
        partial = bool(marker["partial"])
        if str(marker["error"]) and not partial:
            self.fail(item, marker)
            return
        if partial:  # listed first, so that its done record says it is partial
            self.fail(item, marker)
        columns = {key: np.asarray([r[key] for r in rows], dtype=object if key in ("png", "name", "source") else None)
                   for key in ("frame", "time", "name", "source", "png")}
        self.finish(item, columns, np.stack([r["values"] for r in rows]).astype(np.float32))

    def unfinished(self) -> list[str]:
        return sorted(set(self.rows) | set(self.markers))


def _read_done(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        logger.warning("%s is damaged; every input is processed again", path)
        return {}


def _write_failures(path: Path, failures: dict[str, dict[str, Any]]) -> None:
    """``failures.csv``: one row per input that failed or is partial (columns: schema.FAILURE_COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FAILURE_COLUMNS)
    writer.writeheader()
    writer.writerows(failures.values())
    atomic_write_text(path, buffer.getvalue())


def run_job(job: BatchJob, engine: str = "local", workers: int = 1, address: str | None = None,
            progress: bool = True, after_input: Callable[[str], None] | None = None,
            on_choice: Callable[[Any], None] | None = None) -> JobReport:
    """Run ``job`` on ``engine`` (``local`` or ``ray``); see the module docstring.

    ``after_input`` is called with each input's id once its outputs are on disk (progress hooks, tests);
    ``on_choice`` with the :class:`~surgenet.runtime.auto.Choice` of ``--backend auto``, before any input.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}.")
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}.")
    inputs = discover_inputs(job.source)
    from dataclasses import replace

    from .engines import RAY_THREADS
    from .spec import BatchModel, model_metadata, resolve_backend

    # Once, before any input: the workers open this backend (measured as they will run it).
    spec, choice = resolve_backend(job.spec, frames_dir=job.auto_frames, refresh=job.rebenchmark,
                                   threads=RAY_THREADS if engine == "ray" else None)
    job = replace(job, spec=spec)
    if choice is not None and on_choice is not None:
        on_choice(choice)
    out = Path(job.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _write_run(out / RUN_FILE, job, engine, choice)
    from ..transforms import create_transform

    preprocessing = job.spec.preprocessing()
    transform = create_transform(preprocessing)
    fingerprint = job.spec.fingerprint()
    done_path = out / DONE_FILE
    done = _read_done(done_path)
    report = JobReport(backend=job.spec.backend, choice=choice)
    failures: dict[str, dict[str, Any]] = {}  # failures.csv: this run's, and the partial inputs already done
    todo = []
    for item in inputs:
        record = done.get(item.id)
        if record and record.get("model") == fingerprint and record.get("input") == item.fingerprint():
            report.skipped.append(item.id)
            if record.get("partial"):  # done as far as it could be read: still listed as partial
                failures[item.id] = record["partial"]
                report.partial[item.id] = record["partial"]["error"]
        else:
            todo.append(item)
    items = {item.id: item for item in inputs}
    # The driver's own copy: phase models run their causal temporal part here, in frame order. An
    # exported model on Ray runs in the actors only: the driver reads its config from the folder.
    needed = job.spec.mode == "phase" or (todo and (engine == "local" or not job.spec.exported))
    driver_model = BatchModel(job.spec) if needed else None
    model = driver_model.model if driver_model is not None else None
    config = driver_model.config if driver_model is not None else (
        job.spec.export_config() if job.spec.exported else None)
    metadata = model_metadata(job.spec, config, {"mean": list(transform.mean), "std": list(transform.std),
                                                 "size": list(transform.size)}, choice)
    class_names = list(metadata["class_names"])
    bar = _progress(len(todo), progress)

    def finish(item: ArchiveInput, frames: dict[str, np.ndarray], values: np.ndarray) -> None:
        if job.spec.mode == "phase":
            values = _phase_probabilities(model, values)
        rows = write_input(out, item, job.spec.mode, frames, values, class_names, metadata, job.dtype)
        done[item.id] = {"path": item.path, "input": item.fingerprint(), "model": fingerprint, "rows": rows}
        if item.id in report.partial:
            done[item.id]["partial"] = failures[item.id]
        atomic_write_text(done_path, json.dumps(done, indent=1, sort_keys=True) + "\n")
        report.done.append(item.id)
        report.frames += rows
        bar.update(1)
        bar.set_postfix(frames=report.frames, failed=len(report.failed))
        if after_input is not None:
            after_input(item.id)

    def fail(item: ArchiveInput, marker: dict[str, Any]) -> None:
        partial, error = bool(marker["partial"]), str(marker["error"])
        (report.partial if partial else report.failed)[item.id] = error
        expected = int(marker["expected"])
        failures[item.id] = {"video": item.id, "path": item.path, "status": PARTIAL if partial else FAILED,
                             "expected_frames": "" if expected < 0 else expected, "read_frames": int(marker["read"]),
                             "error": error}
        _write_failures(out / FAILURES_FILE, failures)
        if partial:
            logger.warning("%s", error)  # one line: the frames expected and read; its rows are kept
            return  # counted by finish()
        bar.update(1)
        bar.set_postfix(frames=report.frames, failed=len(report.failed))

    collector = _Collector(job, items, finish, fail)
    try:
        if todo:
            from .engines import run_local, run_ray

            if engine == "local":
                run_local(todo, job, collector.add, driver_model)
            else:
                run_ray(todo, job, collector.add, workers=workers, address=address)
            missing = collector.unfinished()
            if missing:
                raise RuntimeError(f"the engine ended with inputs incomplete: {missing[:5]}")
    finally:
        bar.close()
    if failures:
        _write_failures(out / FAILURES_FILE, failures)
    else:
        (out / FAILURES_FILE).unlink(missing_ok=True)
    for item_id, reason in collector.skipped_frames.items():
        logger.warning("%s: unreadable frames skipped: %s", item_id, reason)
    ids = [item.id for item in inputs if item.id in done and item.id not in report.failed]
    report.table = join_parts(out, ids, job.spec.mode, job.dtype)
    if job.near_duplicates is not None and report.table is not None:
        from .duplicates import write_near_duplicates

        report.duplicates = write_near_duplicates(report.table, job.near_duplicates, out / "near_duplicates.csv")
    return report


def _write_run(path: Path, job: BatchJob, engine: str, choice: Any) -> None:
    """``OUT/run.json``: the model, the backend that runs it and, for ``--backend auto``, how it was
    picked (every candidate's median ms and agreement with FP32, measured now or from the cache)."""
    from .._version import __version__

    auto = None
    if choice is not None:
        auto = {**choice.to_json(), "cached": choice.cached, "summary": choice.summary()}
    record = {"surgenet_version": __version__, "model": job.spec.model, "mode": job.spec.mode, "engine": engine,
              "device": job.spec.device, "backend": job.spec.backend, "backend_auto": auto}
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def _phase_probabilities(model, embeddings: np.ndarray) -> np.ndarray:
    """The causal temporal model over one input's frame embeddings, in frame order."""
    import torch

    from ..postprocess import label_probabilities

    with torch.inference_mode():
        logits = model.forward_temporal(torch.from_numpy(embeddings))
    return label_probabilities(logits, "phase")


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="input", desc="archive", disable=not enabled or total == 0)
