"""Real time with every frame masked: the model on keyframes, flow propagation in between.

``surgenet predict CLIP.mp4 --realtime`` on a segmentation model runs here. The clip plays as a
live source delivers it (each frame arrives at its timestamp) and every frame is given a mask:

    reader thread   decode, paced at the clip's rate ──────────────────────► frame queue
    main thread     keyframe: preprocess + model + probabilities at the work size
                    otherwise: propagate the last probabilities onto the frame (DIS flow)
    writer thread   keyframe: the model's own mask (as Predictor gives it, per frame);
                    otherwise: the propagated labels resized to the frame ──► sink, in order

A keyframe's mask is exactly the per-frame prediction; in between the labels follow the scene.
The model costs ``m`` ms a keyframe and propagation ``p`` ms a frame, so with a keyframe every
``N`` frames the main thread spends ``(m + (N - 1) p) / N`` ms a frame: it keeps up with a frame
period ``T`` when that is below ``headroom * T`` (the other threads share the cores), that is
``N >= (m - p) / (headroom * T - p)`` (:func:`next_interval`). ``interval=None`` re-chooses
``N`` at every keyframe from the measured (smoothed) times and the frames waiting, bounded by
``max_interval``; a fixed ``interval`` is kept as given. A scene cut (the thumbnail histogram of
:class:`~.keyframes.SceneCutDetector`) makes a keyframe at once.

With ``lookahead`` the frames between two keyframes wait for the second one: its mask is carried
back along the flows already computed and each frame blends the two, weighted by nearness
(:mod:`.video.interpolate`); at a given interval the masks are closer to per-frame ones, and a
frame is written up to one interval plus one model call after it arrived (the latency the report
gives). A scene cut or the end of the clip releases held frames as carried forward.

Propagation works at ``work_scale`` of the frame; by default on as many pixels as the model's
input (``sqrt(model area / frame area)`` of each side: 0.4 for an 854x480 frame and a 256x256
model), since a mask holds no finer detail than the model saw: the flow, the warping and the
probabilities there; the labels are resized back to the frame with nearest neighbours. The
report gives per stage times, the end-to-end latency (arrival to written), the sustained fps of
the output and the keyframes and propagated frames counted, and names the thread that holds the
pipeline back.
"""

from __future__ import annotations

import math
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .exceptions import InputError
from .io.video import Frame, iter_video, video_info
from .postprocess import label_names, segmentation_probabilities
from .predict import Predictor
from .realtime import LiveSourcePacer, Sink, VideoRunReport, latency_summary, start_workers, timed_decode, write_results
from .results import SegmentationResult
from .video._deps import cv2 as _cv2
from .video.keyframe_interval import DEFAULT_HEADROOM, DEFAULT_MAX_INTERVAL, next_interval
from .video.interpolate import HeldFrame, blend_between_keyframes
from .video.keyframes import SceneCutDetector
from .video.methods import LOOKAHEAD_METHODS, check_lookahead, create_propagator
from .video.propagate import Propagator, labels_of

KEYFRAME_STAGES = ("decode", "preprocess", "infer", "propagate", "interpolate", "postprocess", "write")
KEEPS_UP_RATIO = 0.98  # output rate / clip rate at which the run counts as keeping up


def default_work_scale(height: int, width: int, model_size: tuple[int, int] | None = None) -> float:
    """The share of the frame's sides that propagation works at: as many pixels as the model sees
    (``sqrt(model area / frame area)``, the frame's aspect kept; a mask holds no finer detail than
    the model's input gave it), never above full size. Without the model's size: half size for
    frames wider (or taller) than 640 pixels, full size for smaller ones."""
    if model_size is None:
        return 0.5 if max(height, width) > 640 else 1.0
    return min(1.0, math.sqrt(model_size[0] * model_size[1] / (height * width)))


class KeyframePropagation:
    """The per-frame work of keyframe mode at the work size: a keyframe's logits become the
    propagator's new state; any other frame gets the state carried onto it.

    With ``lookahead`` the frames between two keyframes are held and released at the next keyframe,
    blended from both (:mod:`.video.interpolate`); a scene cut or the end of the video releases them
    as carried forward (the next keyframe is another scene, or there is none).
    Shared by the real-time runner and the quality benchmark, so both measure one algorithm.
    """

    def __init__(self, propagator: Propagator, work_scale: float | None = None,
                 model_size: tuple[int, int] | None = None, lookahead: bool = False) -> None:
        if work_scale is not None and not 0 < work_scale <= 1:
            raise InputError(f"work scale must be in (0, 1], got {work_scale}.")
        self.propagator, self.work_scale, self.lookahead = propagator, work_scale, lookahead
        self.model_size = None if model_size is None else (int(model_size[0]), int(model_size[1]))
        self._size: tuple[int, int] | None = None
        self._held: list[HeldFrame] = []
        self.blend_ms = 0.0  # the last keyframe's walk back over the held frames (look-ahead), in ms

    def work_size(self, image: np.ndarray) -> tuple[int, int]:
        """(height, width) the propagation works at for frames of this size."""
        h, w = image.shape[:2]
        scale = self.work_scale if self.work_scale is not None else default_work_scale(h, w, self.model_size)
        return max(8, round(h * scale)), max(8, round(w * scale))

    @property
    def held(self) -> int:
        """Frames waiting for the next keyframe (look-ahead only)."""
        return len(self._held)

    def _small(self, image: np.ndarray) -> np.ndarray:
        if self._size is None or self._size == image.shape[:2]:
            return image
        cv2 = _cv2()
        return cv2.resize(image, (self._size[1], self._size[0]), interpolation=cv2.INTER_AREA)

    def keyframe(self, image: np.ndarray, logits: torch.Tensor, scene_cut: bool = False) -> list[np.ndarray]:
        """Start again from a keyframe. Returns the probabilities (work size) of the frames held since
        the last keyframe, in order: blended from both keyframes, or carried forward after a scene
        cut or a change of frame size; none without ``lookahead``."""
        size = self.work_size(image)
        probs = segmentation_probabilities(logits, size)
        released: list[np.ndarray] = []
        self.blend_ms = 0.0
        if self._held:
            if not scene_cut and size == self._size:
                step = self.propagator.step(self._small(image))  # the flow onto the keyframe, for its pull-back
                start = time.perf_counter()
                released = blend_between_keyframes(self._held, probs, self._pull_back(step))
                self.blend_ms = (time.perf_counter() - start) * 1e3
            else:
                released = [frame.forward for frame in self._held]
        self._held = []
        self._size = size
        self.propagator.start(self._small(image), probs)
        return released

    def propagate(self, image: np.ndarray) -> np.ndarray | None:
        """The last state carried onto ``image`` (probabilities at the work size); with ``lookahead``
        the frame is held and ``None`` returned (:meth:`keyframe` or :meth:`flush` release it)."""
        if self._size is None:
            raise InputError("the first frame must be a keyframe.")
        step = self.propagator.step(self._small(image))
        if not self.lookahead:
            return step.probs
        self._held.append(HeldFrame(step.probs, self._pull_back(step)))
        return None

    def _pull_back(self, step: Any) -> Callable[[np.ndarray], np.ndarray]:
        if step.pull_back is None:
            raise InputError(f"--lookahead needs a propagation that can carry masks backwards; "
                             f"{self.propagator.name!r} cannot (use flow or raft).")
        return step.pull_back

    def flush(self) -> list[np.ndarray]:
        """The held frames as carried forward (the video ended before another keyframe)."""
        released, self._held = [frame.forward for frame in self._held], []
        return released


def keyframe_stream(method: str, model: Any, model_size: tuple[int, int], lookahead: bool = False,
                    work_scale: float | None = None, **options: Any) -> KeyframePropagation:
    """The propagation of real-time keyframe mode, as the runner and the quality benchmark build it.

    Flow methods skip the forward-backward consistency check unless ``consistency`` is given: it
    feeds the propagation's confidence, which keyframe real time never reads (its keyframes come
    from the interval and scene cuts), and costs a second flow, a remap and the occlusion fill, a
    about 30 % of the propagation's time, for masks within 0.002 mIoU on the real clips.
    """
    if method in LOOKAHEAD_METHODS:
        options.setdefault("consistency", False)
    return KeyframePropagation(create_propagator(method, model, **options), work_scale, model_size=model_size,
                               lookahead=lookahead)


def full_size_labels(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The most probable label of each pixel, resized (nearest) to ``size`` = (height, width)."""
    labels = labels_of(probs)
    if labels.shape[:2] == tuple(size):
        return labels
    cv2 = _cv2()
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


@dataclass
class KeyframeRunReport(VideoRunReport):
    """A real-time keyframe run: every frame written; which ones the model saw and why."""

    fixed_interval: int | None = None
    max_interval: int = DEFAULT_MAX_INTERVAL
    keyframe_indices: list[int] = field(default_factory=list)
    intervals: list[int] = field(default_factory=list)  # the interval chosen at each keyframe
    scene_cuts: int = 0
    lookahead: bool = False  # frames between keyframes waited for the next one (blended from both)
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in KEYFRAME_STAGES})

    @property
    def keyframes(self) -> int:
        return len(self.keyframe_indices)

    @property
    def propagated(self) -> int:
        return self.processed - self.keyframes

    @property
    def sustained_fps(self) -> float:
        """Frames written per second between the first and the last write: the output's rate
        (the clip's rate when the pipeline keeps up, what the pipeline manages when it does not)."""
        if self.first_written is None or self.last_written is None or self.processed < 2:
            return float("nan")
        span = self.last_written - self.first_written
        return (self.processed - 1) / span if span > 0 else float("nan")

    @property
    def keeps_up(self) -> bool | None:
        """Every frame masked and written at (within 2 % of) the clip's rate."""
        if not self.source_fps or self.processed < 2:
            return None
        return self.processed == self.decoded and self.sustained_fps >= KEEPS_UP_RATIO * self.source_fps

    def thread_loads(self) -> dict[str, float]:
        """Busy ms per output frame of each thread (the frame period is what each may spend)."""
        n = max(self.processed, 1)
        busy = {name: sum(self.stages[name]) for name in KEYFRAME_STAGES}
        return {"reader (decode)": busy["decode"] / n,
                "model + propagation": (busy["preprocess"] + busy["infer"] + busy["propagate"]
                                        + busy["interpolate"]) / n,
                "writer (masks, overlay)": (busy["postprocess"] + busy["write"]) / n}

    def bottleneck(self) -> tuple[str, float]:
        """The thread with the most work per frame, and that work in ms."""
        name, ms = max(self.thread_loads().items(), key=lambda kv: kv[1])
        return name, ms

    def as_dict(self) -> dict[str, Any]:
        name, ms = self.bottleneck()
        return super().as_dict() | {
            "sustained_fps": self.sustained_fps, "keyframes": self.keyframes, "propagated": self.propagated,
            "fixed_interval": self.fixed_interval, "max_interval": self.max_interval, "intervals": self.intervals,
            "scene_cuts": self.scene_cuts, "lookahead": self.lookahead, "latency_ms": latency_summary(self.latency_ms),
            "thread_ms_per_frame": self.thread_loads(), "bottleneck": {"thread": name, "ms_per_frame": ms}}


def format_keyframe_report(report: KeyframeRunReport) -> str:
    """The terminal summary of a real-time keyframe run."""
    rate = f"clip {report.source_fps:.2f} fps" if report.source_fps else "clip rate unknown"
    verdict = {True: "keeps up", False: "falls behind", None: "?"}[report.keeps_up]
    how = (f"fixed interval {report.fixed_interval}" if report.fixed_interval else
           f"adaptive interval {min(report.intervals, default=1)}..{max(report.intervals, default=1)}"
           f" (max {report.max_interval})") + (", look-ahead (masks from both keyframes)" if report.lookahead else "")
    lat = latency_summary(report.latency_ms)
    lines = [f"real time, every frame masked: {report.processed} frame(s) written, {report.keyframes} keyframe(s) "
             f"(model), {report.propagated} propagated, {how}, {report.scene_cuts} scene cut(s)",
             f"{report.sustained_fps:.2f} fps sustained ({rate}: {verdict}); end-to-end latency ms: mean "
             f"{lat['mean']:.1f}, p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f}, p99.9 {lat['p99.9']:.1f}, "
             f"max {lat['max']:.1f}",
             f"{'stage':<12}{'mean ms':>10}{'p90 ms':>10}{'frames':>8}"]
    for name, t in report.stage_times().items():
        if t.count or name != "interpolate":  # interpolation is look-ahead's stage only
            lines.append(f"{name:<12}{t.mean_ms:>10.2f}{t.p90_ms:>10.2f}{t.count:>8}")
    if report.source_fps:
        name, ms = report.bottleneck()
        what = "held back by" if report.keeps_up is False else "busiest thread:"
        lines.append(f"{what} {name}, {ms:.1f} ms per frame of a {1000 / report.source_fps:.1f} ms period")
    return "\n".join(lines)


def looped_video(path: Path, repeat: int) -> Iterator[Frame]:
    """The clip ``repeat`` times over, indices and times continuing (a longer live source)."""
    offset_index, offset_time = 0, 0.0
    for _ in range(repeat):
        last: Frame | None = None
        frames = iter_video(path)
        try:
            for vf in frames:
                last = vf
                index = vf.index + offset_index
                yield Frame(index, f"frame_{index:06d}", vf.image,
                            None if vf.time is None else vf.time + offset_time, vf.source)
        finally:
            frames.close()
        if last is None:
            return
        offset_index = last.index + offset_index + 1
        step = 0.0 if last.time is None or last.index == 0 else last.time / last.index
        offset_time = (last.time or 0.0) + offset_time + step


@dataclass
class _Item:
    frame: Frame
    arrived: float


def run_keyframe_video(predictor: Predictor, path: str | Path, sink: Sink | None = None,
                       interval: int | None = None, max_interval: int = DEFAULT_MAX_INTERVAL,
                       propagation: str = "flow", work_scale: float | None = None,
                       cut_threshold: float | None = 0.5, headroom: float = DEFAULT_HEADROOM, lookahead: bool = False,
                       realtime: bool = True, repeat: int = 1, max_frames: int | None = None,
                       queue_size: int = 64, warmup: bool = True, progress: Callable[[int], None] | None = None,
                       **propagator_options: Any) -> KeyframeRunReport:
    """Every frame of a video masked, the model on keyframes only (see the module docstring).

    Args:
        predictor: a segmentation Predictor (PyTorch model or exported runner), batch 1.
        path: the video; checked (and its frame rate read) before any thread starts.
        sink: called with each frame's SegmentationResult on the writer thread, in frame order.
        interval: a fixed keyframe interval; ``None`` adapts it to keep up (bounded by ``max_interval``).
        propagation: the propagation method of :func:`~.methods.create_propagator` (``flow``).
        work_scale: the fraction of the frame size propagation works at (default: see above).
        cut_threshold: scene-cut histogram correlation that forces a keyframe (``None``: never).
        realtime: deliver frames at the clip's rate (False: as fast as decoded, for measurements).
        repeat: play the clip this many times in a row (long runs from a short clip).
        max_frames: stop after this many frames.
        lookahead: hold the frames between keyframes until the next one and blend their masks from
            both (:mod:`.video.interpolate`): closer to per-frame masks at a given interval, written
            up to one interval plus one model call later (flow or raft propagation).
    """
    if lookahead:
        check_lookahead(propagation)
    if interval is not None and interval < 1:
        raise InputError(f"--keyframe-interval must be >= 1, got {interval}.")
    if max_interval < 1 or repeat < 1 or queue_size < 1 or (max_frames is not None and max_frames < 1):
        raise InputError("max_interval, repeat, queue_size and max_frames must be >= 1.")
    if predictor.task != "segmentation":
        raise InputError(f"keyframe real time propagates masks; this model does {predictor.task}.")
    path = Path(path)
    info = video_info(path)
    if realtime and not info.fps:
        raise InputError(f"{path} does not state its frame rate, which real-time mode plays it at; "
                         "run without --realtime.")
    period_ms = 1000.0 / info.fps if info.fps else float("inf")
    model_size = tuple(int(v) for v in predictor.config["input_size"][-2:])
    stream = keyframe_stream(propagation, predictor.model, model_size, lookahead, work_scale, **propagator_options)
    cuts = SceneCutDetector(cut_threshold) if cut_threshold is not None else None
    report = KeyframeRunReport(source=str(path), realtime=realtime, source_fps=info.fps, fixed_interval=interval,
                               max_interval=interval or max_interval, lookahead=lookahead)
    model_ms = 0.0
    if warmup:
        model_ms = _warm_up(predictor)
    frames_in: queue.Queue = queue.Queue(maxsize=queue_size)
    results: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def read() -> None:
        torch.set_num_threads(1)
        frames = looped_video(path, repeat)
        pacer = LiveSourcePacer(info.fps) if realtime else None
        try:
            for count, vf in timed_decode(frames, report, max_frames):
                arrived = time.perf_counter()
                if pacer is not None:  # the frame arrives when a live source would show it; latency counts from then
                    arrived = pacer.wait(vf.time, count)
                while not stop.is_set():
                    try:
                        frames_in.put(_Item(vf, arrived), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        finally:
            frames.close()
            frames_in.put(None)

    names = label_names(predictor.class_names, int(predictor.config["num_classes"]))

    def finisher(item: _Item, is_key: bool, payload) -> Callable[[], SegmentationResult]:
        if is_key:  # the model's own mask, exactly as per-frame prediction gives it
            return lambda: predictor._postprocess(item.frame, payload)
        return lambda: SegmentationResult(index=item.frame.index, source=item.frame.source, time=item.frame.time,
                                          class_names=names,
                                          class_map=full_size_labels(payload, item.frame.image.shape[:2]),
                                          image=item.frame.image if predictor.keep_images else None)

    reader, writer = start_workers(read, lambda: write_results(results, sink, report, stop, progress))
    start = time.perf_counter()
    main_threads = torch.get_num_threads()
    if predictor.model is None:
        torch.set_num_threads(1)
    current = interval or 1
    since: int | None = None
    prop_ms, smooth = 0.0, 0.3
    held: list[_Item] = []  # look-ahead: the frames since the last keyframe, waiting for the next one

    def release(probs_list: list[np.ndarray]) -> None:
        if len(probs_list) != len(held):
            raise RuntimeError(f"{len(probs_list)} masks released for {len(held)} held frames")
        for waiting, probs in zip(held, probs_list):
            results.put((waiting, finisher(waiting, False, probs), 1))
        held.clear()

    try:
        while not stop.is_set():
            item = frames_in.get()
            if item is None:
                break
            image = item.frame.image
            is_cut = cuts(image) if cuts is not None else False
            if since is None or since >= current or is_cut:
                t0 = time.perf_counter()
                x = predictor.transform(image)
                t1 = time.perf_counter()
                logits = predictor._forward(x[None])[0]
                t2 = time.perf_counter()
                released = stream.keyframe(image, logits, scene_cut=is_cut)
                t3 = time.perf_counter()
                report.stages["preprocess"].append((t1 - t0) * 1e3)
                report.stages["infer"].append((t2 - t1) * 1e3)
                if held:  # the walk back, per held frame; the flow onto the keyframe counts with the keyframe
                    report.stages["interpolate"].extend([stream.blend_ms / len(held)] * len(held))
                    release(released)
                spent = (t3 - t0) * 1e3 - stream.blend_ms
                model_ms = spent if not model_ms else (1 - smooth) * model_ms + smooth * spent
                if interval is None:
                    current = next_interval(model_ms, prop_ms, period_ms, max_interval, headroom,
                                            backlog=frames_in.qsize(), current=current)
                report.keyframe_indices.append(item.frame.index)
                report.intervals.append(current)
                report.scene_cuts += int(is_cut and since is not None)
                since = 1
                results.put((item, finisher(item, True, logits), 1))
            else:
                t0 = time.perf_counter()
                probs = stream.propagate(image)
                spent = (time.perf_counter() - t0) * 1e3
                report.stages["propagate"].append(spent)
                interp = report.stages["interpolate"]
                per_frame = spent + (statistics.fmean(interp[-16:]) if lookahead and interp else 0.0)
                prop_ms = per_frame if not prop_ms else (1 - smooth) * prop_ms + smooth * per_frame
                since += 1
                if probs is None:
                    held.append(item)
                else:
                    results.put((item, finisher(item, False, probs), 1))
        if held and not stop.is_set():  # the video ended between keyframes: as carried forward
            release(stream.flush())
    finally:
        torch.set_num_threads(main_threads)
        stop.set()
        while True:  # unblock a reader waiting on a full queue
            try:
                frames_in.get_nowait()
            except queue.Empty:
                break
        results.put(None)
        writer.join()
        reader.join()
    report.wall_s = time.perf_counter() - start
    for worker in (reader, writer):
        if worker.error is not None:
            raise worker.error
    return report


def _warm_up(predictor: Predictor) -> float:
    """Two forward passes on a blank frame of the model's input size; the ms of the second
    (the first estimate of a keyframe's cost)."""
    h, w = (int(v) for v in predictor.config["input_size"][-2:])
    x = predictor.transform(np.zeros((h, w, 3), np.uint8))[None]
    predictor._forward(x)
    t0 = time.perf_counter()
    predictor._forward(x)
    return (time.perf_counter() - t0) * 1e3
