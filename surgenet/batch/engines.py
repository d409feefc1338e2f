"""Two schedulers for one job: in this process, or on Ray Data (a local instance or a cluster).

Both run the same two functions, :func:`~surgenet.batch.decode.decode_rows` (decoding and
preprocessing) and :class:`~surgenet.batch.spec.BatchModel` (the model on a batch), and hand the
output batches to the same collector, so their results agree to numeric tolerance. On Ray,
decoding runs in tasks, the model in an actor pool of ``workers`` actors (one CPU each), and
the driver consumes batches as they stream out, so memory stays bounded whatever the archive's size.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict
from typing import Any, Callable

import numpy as np

from ..exceptions import InputError
from .decode import decode_rows, stack_rows
from .inputs import ArchiveInput

logger = logging.getLogger(__name__)
Sink = Callable[[dict[str, np.ndarray]], None]


RAY_THREADS = 1  # CPU threads of each Ray model actor (one CPU each), and of --backend auto's measurement there


def run_local(items: list[ArchiveInput], job, sink: Sink, model=None) -> None:
    """Inputs one after another in this process, ``job.batch_size`` frames per forward pass."""
    from ..transforms import create_transform
    from .spec import BatchModel

    transform = create_transform(job.spec.preprocessing())
    model = model or BatchModel(job.spec)
    for item in items:
        rows: list[dict[str, Any]] = []
        for row in decode_rows(item, job.fps, transform):
            rows.append(row)
            if len(rows) == job.batch_size:
                sink(model(stack_rows(rows)))
                rows = []
        if rows:
            sink(model(stack_rows(rows)))


def _decode_task(record: dict[str, Any], fps: float | None, preprocessing: dict[str, Any]) -> Any:
    """Ray ``flat_map`` stage: one input's rows (runs in a Ray task); ``preprocessing`` is the
    model's mean, std and input size, read once by the driver."""
    from ..transforms import create_transform

    return decode_rows(ArchiveInput(**record), fps, create_transform(preprocessing))


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise InputError('--engine ray needs Ray: pip install "surgenet[ray]".') from exc
    return ray


def run_ray(items: list[ArchiveInput], job, sink: Sink, workers: int = 1, address: str | None = None) -> None:
    """The same job on Ray Data: a local instance with ``workers`` + 1 CPUs unless ``address`` names
    a running cluster (``ray://host:10001`` or ``auto``); surgenet must be installed on its nodes."""
    ray = _ray()
    from .spec import BatchModel

    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}") from exc
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # surgenet's own bar counts inputs; Ray's would interleave
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        records = [asdict(item) for item in items]
        dataset = ray.data.from_items(records, override_num_blocks=max(1, len(records)))
        dataset = dataset.flat_map(functools.partial(_decode_task, fps=job.fps,
                                                     preprocessing=job.spec.preprocessing()))
        dataset = dataset.map_batches(BatchModel, fn_constructor_kwargs={"spec": job.spec, "threads": RAY_THREADS},
                                      compute=ray.data.ActorPoolStrategy(size=workers), batch_size=job.batch_size,
                                      num_cpus=1,
                                      batch_format="numpy")
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            sink(batch)
    finally:
        if started:
            ray.shutdown()
