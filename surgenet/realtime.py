"""Real-time video: decoding, preprocessing, inference and writing overlapped.

A video runs through three threads so that no stage waits for another one's work:

    reader thread   decode (PyAV) -> preprocess (Predictor.transform) ──► bounded channel
    main thread     channel ──► inference (Predictor.infer_batch) ──────► bounded queue
    writer thread   queue ──► postprocess (resize back, argmax) -> sink (files, video) in order

The stages are the Predictor's own, so a pipelined run gives exactly the results of
``Predictor.predict_video``. The heavy parts (FFmpeg decoding, torch/ONNX Runtime/OpenVINO
kernels, PNG/H.264 encoding) release the GIL, so the threads do overlap on a multi-core CPU.
The reader and the writer run their torch operations (resizing, labels) on one thread each, and
so does the main thread when the model is an exported one (its torch work is then only stacking
frames): the stages already run side by side, and an OpenMP team of every core in each of them
would only fight the model for the same cores, its idle members spinning (two cores: 24 fps with
teams, 25-28 without).

Two modes:

- throughput (default): every frame is processed; the reader waits when the channel is full,
  so memory stays bounded and the sustained fps is what the slowest stage allows.
- real time (``realtime=True``): the clip plays as a live source would deliver it, each frame
  arriving at its timestamp. The channel holds only the newest frame: a frame the model has not
  taken by the time the next one arrives is stale and dropped, so the model never falls behind
  the video. Frames keep their order (the written indices increase); the last frame is always
  processed; the report counts the drops.

The report gives, per stage, the mean and 90th percentile time per frame, the end-to-end latency
(arrival to written) and the sustained fps (frames written per second of wall time).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .exceptions import InputError
from .io.video import Frame, iter_video, video_info
from .predict import Predictor
from .results import FrameResult

STAGES = ("decode", "preprocess", "infer", "postprocess", "write")
Sink = Callable[[FrameResult], None]


@dataclass
class StageTime:
    mean_ms: float
    p90_ms: float
    count: int


def stage_time(samples_ms: list[float]) -> StageTime:
    """Mean and 90th percentile (linear interpolation, numpy's default) of per-frame times."""
    if not samples_ms:
        return StageTime(float("nan"), float("nan"), 0)
    values = np.asarray(samples_ms, dtype=np.float64)
    return StageTime(float(values.mean()), float(np.percentile(values, 90)), len(values))


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between the two closest ranks
    (numpy's default ``linear`` method, written out: position ``q/100 * (n - 1)`` in the sorted values)."""
    if not 0 <= q <= 100:
        raise InputError(f"a percentile is in [0, 100], got {q}.")
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return float("nan")
    position = q / 100 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


LATENCY_PERCENTILES = (50.0, 99.0, 99.9)


def latency_summary(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """Mean, p50, p99, p99.9 and max of end-to-end latencies (the figures HoloHub's benchmarks give)."""
    values = [float(v) for v in samples_ms]
    if not values:
        return {"mean": float("nan"), **{f"p{q:g}": float("nan") for q in LATENCY_PERCENTILES}, "max": float("nan"),
                "count": 0}
    return {"mean": sum(values) / len(values), **{f"p{q:g}": percentile(values, q) for q in LATENCY_PERCENTILES},
            "max": max(values), "count": len(values)}


@dataclass
class VideoRunReport:
    """What a pipelined run did and how fast (times per frame in milliseconds)."""

    source: str
    realtime: bool
    source_fps: float | None  # frames per second of the input after --stride
    wall_s: float = 0.0  # first decode to last write
    decoded: int = 0
    processed_indices: list[int] = field(default_factory=list)  # video frame indices written, in order
    dropped_indices: list[int] = field(default_factory=list)  # stale frames skipped (real-time mode)
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    latency_ms: list[float] = field(default_factory=list)  # arrival (after decode) to written
    partial: str = ""  # the video ended before the frames its container announces: what was read of how many
    first_written: float | None = None  # perf_counter() of the first and last write
    last_written: float | None = None

    def written(self, when: float) -> None:
        """Record a result written at ``when`` (``time.perf_counter()``)."""
        if self.first_written is None:
            self.first_written = when
        self.last_written = when

    @property
    def processed(self) -> int:
        return len(self.processed_indices)

    @property
    def dropped(self) -> int:
        return len(self.dropped_indices)

    @property
    def fps(self) -> float:
        """Sustained throughput: frames written per second of wall time."""
        return self.processed / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def keeps_up(self) -> bool | None:
        """Real time: nothing dropped; throughput: at least the clip's frame rate (None: rate unknown)."""
        if self.realtime:
            return self.dropped == 0
        return None if not self.source_fps else self.fps >= self.source_fps

    def stage_times(self) -> dict[str, StageTime]:
        return {name: stage_time(samples) for name, samples in self.stages.items()} | \
            {"latency": stage_time(self.latency_ms)}

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "realtime": self.realtime, "source_fps": self.source_fps,
                "wall_s": self.wall_s, "decoded": self.decoded, "processed": self.processed,
                "dropped": self.dropped, "fps": self.fps, "keeps_up": self.keeps_up,
                "stages_ms": {k: {"mean": v.mean_ms, "p90": v.p90_ms} for k, v in self.stage_times().items()}}


def format_report(report: VideoRunReport) -> str:
    """A few lines for a terminal: the sustained fps against the clip's, then a stage table."""
    rate = f"clip {report.source_fps:.2f} fps" if report.source_fps else "clip rate unknown"
    verdict = {True: "keeps up", False: "falls behind", None: "?"}[report.keeps_up]
    mode = "real time" if report.realtime else "throughput"
    lines = [f"{mode}: {report.processed} frame(s) written, {report.dropped} dropped, in {report.wall_s:.2f} s: "
             f"{report.fps:.2f} fps sustained ({rate}: {verdict})",
             f"{'stage':<12}{'mean ms':>10}{'p90 ms':>10}"]
    for name, t in report.stage_times().items():
        lines.append(f"{name:<12}{t.mean_ms:>10.2f}{t.p90_ms:>10.2f}")
    return "\n".join(lines)


@dataclass
class _Item:
    frame: Frame
    x: torch.Tensor | None
    arrived: float  # perf_counter() when the frame became available


class _Channel:
    """Frames from the reader to the model, in decoding order.

    Bounded: in throughput mode the reader waits while it is full; in real-time mode it holds
    only the newest frame, and a frame still there when the next one arrives is dropped.
    """

    def __init__(self, capacity: int, latest_only: bool) -> None:
        self.capacity = 1 if latest_only else max(1, capacity)
        self.latest_only = latest_only
        self.items: list[_Item] = []
        self.dropped: list[int] = []
        self.closed = self.cancelled = False
        self.cond = threading.Condition()

    def put(self, item: _Item) -> bool:
        """False when the consumer has gone (stop reading)."""
        with self.cond:
            while not self.latest_only and len(self.items) >= self.capacity and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                return False
            if self.latest_only and self.items:
                self.dropped.append(self.items.pop().frame.index)
            self.items.append(item)
            self.cond.notify_all()
            return True

    def take(self, n: int) -> list[_Item]:
        """Up to ``n`` frames in order, waiting for ``n`` unless the reader has finished; [] at the end."""
        with self.cond:
            while len(self.items) < n and not self.closed and not self.cancelled:
                self.cond.wait()
            chunk, self.items = self.items[:n], self.items[n:]
            self.cond.notify_all()
            return chunk

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()


def timed_decode(frames: Iterator[Frame], report: Any, max_frames: int | None = None) -> Iterator[tuple[int, Frame]]:
    """``(count, frame)`` of ``frames``, at most ``max_frames``: each decode is timed into
    ``report.stages["decode"]`` (ms) and counted in ``report.decoded``."""
    for count in range(max_frames or 2 ** 62):
        t0 = time.perf_counter()
        frame = next(frames, None)
        if frame is None:
            return
        report.stages["decode"].append((time.perf_counter() - t0) * 1e3)
        report.decoded += 1
        yield count, frame


class LiveSourcePacer:
    """Delivers a clip's frames at their timestamps, as a live source (a camera) would: ``wait``
    sleeps until a frame is due and returns the time it was due (the first frame is due at once).
    A frame without a timestamp is due ``count / fps`` after the first."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._start: float | None = None
        self._first_time: float | None = None

    def wait(self, frame_time: float | None, count: int) -> float:
        if self._start is None:
            self._start, self._first_time = time.perf_counter(), frame_time
        offset = (frame_time - self._first_time) if frame_time is not None and self._first_time is not None \
            else count / self.fps
        due = self._start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return due


def write_results(results: queue.Queue, sink: Sink | None, report: VideoRunReport, failed: threading.Event,
                  progress: Callable[[int], Any] | None) -> None:
    """The writer thread of both real-time loops: take ``(item, finish, done)`` entries until None,
    build each result (``finish()``), hand it to ``sink`` and record the post-processing and write
    times and the end-to-end latency from the frame's arrival. On an error ``failed`` is set and
    the queue drained, so the model thread never blocks on a full queue, then the error propagates."""
    torch.set_num_threads(1)
    while (entry := results.get()) is not None:
        item, finish, done = entry
        try:
            t0 = time.perf_counter()
            result = finish()
            t1 = time.perf_counter()
            if sink is not None:
                sink(result)
            t2 = time.perf_counter()
        except BaseException:
            failed.set()
            while results.get() is not None:
                pass
            raise
        report.stages["postprocess"].append((t1 - t0) * 1e3)
        report.stages["write"].append((t2 - t1) * 1e3)
        report.latency_ms.append((t2 - item.arrived) * 1e3)
        report.processed_indices.append(item.frame.index)
        report.written(t2)
        if progress is not None:
            progress(done)


class _Worker(threading.Thread):
    """A daemon thread that keeps the first exception it meets for the main thread to raise."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self.error = exc


def start_workers(read: Callable[[], None], write: Callable[[], None]) -> tuple[_Worker, _Worker]:
    """Start the reader and the writer thread of a real-time loop (named, so a profile shows them)."""
    reader, writer = _Worker("surgenet-reader", read), _Worker("surgenet-writer", write)
    reader.start()
    writer.start()
    return reader, writer


def run_video(predictor: Predictor, path: str | Path, sink: Sink | None = None, realtime: bool = False,
              stride: int = 1, max_frames: int | None = None, queue_size: int = 8, warmup: bool = True,
              progress: Callable[[int], None] | None = None) -> VideoRunReport:
    """Run ``predictor`` over a video with decoding, preprocessing, inference and writing overlapped.

    Args:
        predictor: any Predictor (PyTorch model or exported runner). Real-time mode works on the
            newest frame, one at a time (batch 1); throughput mode uses ``predictor.batch_size``.
        path: the video (checked before any thread starts: missing or undecodable is an InputError).
        sink: called with each result on the writer thread, in frame order (e.g. save files).
        realtime: play the clip at its frame rate and drop stale frames rather than fall behind.
        stride: every ``stride``-th frame of the video (the clip's rate is divided by it).
        max_frames: stop after this many frames (after the stride).
        queue_size: frames that may wait between two stages in throughput mode (bounds memory).
        warmup: run the model once before the clock starts (first-call set-up is not a frame's cost).
        progress: called on the writer thread with the number of frames done (written or dropped).

    Returns:
        the :class:`VideoRunReport`; ``report.decoded == report.processed + report.dropped``.
    """
    if stride < 1 or (max_frames is not None and max_frames < 1) or queue_size < 1:
        raise InputError(f"stride, max_frames and queue_size must be >= 1, got {stride}, {max_frames}, {queue_size}.")
    path = Path(path)
    info = video_info(path)
    source_fps = info.fps / stride if info.fps else None
    if realtime and not source_fps:
        raise InputError(f"{path} does not state its frame rate, which real-time mode plays it at; "
                         "run without --realtime.")
    batch = 1 if realtime else predictor.batch_size
    report = VideoRunReport(source=str(path), realtime=realtime, source_fps=source_fps)
    if warmup:
        warm_up(predictor, batch)
    channel = _Channel(max(queue_size, 2 * batch), latest_only=realtime)
    # Real time: at most one result waits for the writer, so a slow writer holds the model back and
    # the channel drops stale frames, instead of a backlog of old results growing the latency.
    results: queue.Queue = queue.Queue(maxsize=1 if realtime else max(queue_size, 2 * batch))

    def read() -> None:
        torch.set_num_threads(1)  # this thread's torch ops only (OpenMP's setting is per thread)
        def ended_early(exc: Exception) -> None:
            report.partial = str(exc)

        frames = iter_video(path, stride, on_partial=ended_early)
        pacer = LiveSourcePacer(source_fps) if realtime else None
        try:
            for count, vf in timed_decode(frames, report, max_frames):
                if pacer is not None:  # the frame arrives when a live source would show it
                    pacer.wait(vf.time, count)
                arrived = time.perf_counter()
                x = predictor.transform(vf.image)
                report.stages["preprocess"].append((time.perf_counter() - arrived) * 1e3)
                if not channel.put(_Item(vf, x, arrived)):
                    return
        finally:
            frames.close()
            channel.close()

    failed = threading.Event()

    reader, writer = start_workers(read, lambda: write_results(results, sink, report, failed, progress))
    start = time.perf_counter()
    state, seen_drops = None, 0
    main_threads = torch.get_num_threads()
    if predictor.model is None:  # an exported model: the main thread's torch work is glue (stacking)
        torch.set_num_threads(1)
    try:
        while not failed.is_set():
            chunk = channel.take(batch)
            if not chunk:
                break
            t0 = time.perf_counter()
            finishers, state = predictor.infer_batch([it.frame for it in chunk], torch.stack([it.x for it in chunk]),
                                                     state)
            share = (time.perf_counter() - t0) * 1e3 / len(chunk)
            drops = len(channel.dropped) - seen_drops
            seen_drops += drops
            for k, (item, finish) in enumerate(zip(chunk, finishers)):
                report.stages["infer"].append(share)
                item.x = None  # the model's input is no longer needed; the frame stays for the overlay
                results.put((item, finish, 1 + (drops if k == 0 else 0)))
    finally:
        torch.set_num_threads(main_threads)
        channel.cancel()
        results.put(None)
        writer.join()
        reader.join()
    report.wall_s = time.perf_counter() - start
    report.dropped_indices = list(channel.dropped)
    for worker in (reader, writer):
        if worker.error is not None:
            raise worker.error
    if progress is not None and len(channel.dropped) > seen_drops:
        progress(len(channel.dropped) - seen_drops)
    return report


def warm_up(predictor: Predictor, batch: int) -> None:
    """One forward pass on a blank batch of the model's input size (kernel selection, allocations)."""
    h, w = (int(v) for v in predictor.config["input_size"][-2:])
    image = np.zeros((h, w, 3), np.uint8)
    frames = [Frame(i, f"frame_{i:06d}", image) for i in range(batch)]
    x = predictor.transform(image)
    predictor.infer_batch(frames, torch.stack([x] * batch), None)
