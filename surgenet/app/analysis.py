"""What the web demo computes, as plain functions of files and arrays (tested without a browser).

``analyse_frame``: a frame -> overlay at the frame's size, a legend of classes with their share of
the image, the probabilities of each multi-label model (CVS criteria, tools) with the labels at its
threshold, and the time each model took. ``analyse_clip``: a short video -> an overlaid H.264
video, the phase probabilities over time and their timeline figure, and a multi-label model's
probabilities per frame with their presence figure.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..bounds import check_number
from ..exceptions import InputError
from ..figures import pyplot
from ..io import as_rgb_array, iter_video
from ..io.paths import inside, safe_name
from ..io.video import VideoWriter, import_av
from ..results import MultiLabelResult, palette
from ..tasks import MULTI_LABEL_TASKS
from .catalog import ModelCatalog

MAX_FRAME_PIXELS = 6000 * 4000  # a surgical frame is at most 4K; larger uploads are refused, not decoded
DEFAULT_CLIP_FPS = 2.0  # frames analysed per second of video (phase labels are 1 fps in Cholec80)
DEFAULT_MAX_SECONDS = 60.0
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 ** 2  # uploads above it are refused before any decoding


def check_upload_size(path: str | Path, max_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES) -> None:
    """Refuse an uploaded file larger than ``max_bytes`` (None: no limit), from its size on disk only."""
    size = Path(path).stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InputError(f"{Path(path).name} is {size / 1024 ** 2:.1f} MB; uploads up to "
                         f"{max_bytes / 1024 ** 2:.1f} MB are accepted (surgenet app --max-file-size).")


# How each multi-label task names its labels, and words one at or above the threshold and one below it.
LABEL_NOUNS = {"cvs": "CVS criterion", "tools": "tool"}
DECISION_WORDS = {"cvs": ("met", "not met"), "tools": ("present", "absent")}


@dataclass
class LabelScores:
    """A multi-label model's answer for one frame (CVS criteria, tools): one sigmoid per label."""

    task: str
    probabilities: dict[str, float]  # label -> probability, in the model's class_names order
    threshold: float  # the predictor's: a label at or above it is met / present

    @classmethod
    def of(cls, task: str, result: MultiLabelResult) -> "LabelScores":
        return cls(task, {n: float(p) for n, p in zip(result.class_names, result.probabilities)},
                   float(result.threshold))

    @property
    def positive(self) -> list[str]:
        """The labels at or above the threshold (CVS: criteria met; tools: tools present)."""
        return [n for n, p in self.probabilities.items() if p >= self.threshold]


@dataclass
class FrameAnalysis:
    overlay: np.ndarray  # (H, W, 3) uint8 at the frame's own size
    legend: list[dict[str, Any]]  # class, colour (#rrggbb), share (0..1), one row per class
    scores: dict[str, LabelScores]  # multi-label task (cvs, tools) -> its model's answer
    seconds: dict[str, float]  # model label -> wall time of its prediction
    notes: list[str] = field(default_factory=list)

    @property
    def cvs(self) -> dict[str, float] | None:
        """Criterion -> probability, when a CVS model was chosen."""
        return self.scores["cvs"].probabilities if "cvs" in self.scores else None

    @property
    def tools(self) -> dict[str, float] | None:
        """Tool -> probability, when a tools model was chosen."""
        return self.scores["tools"].probabilities if "tools" in self.scores else None


@dataclass
class ClipAnalysis:
    video: Path | None  # the overlaid video (None without a segmentation model)
    times: np.ndarray  # (T,) seconds from the start of the clip
    phase_names: list[str]
    phase_probabilities: np.ndarray  # (T, P)
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    label_task: str | None = None  # the multi-label model's task (cvs, tools), None without one
    label_names: list[str] = field(default_factory=list)
    label_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (T, C)
    label_threshold: float = 0.5

    @property
    def phases(self) -> np.ndarray:
        return self.phase_probabilities.argmax(axis=1) if len(self.phase_probabilities) else np.zeros(0, int)


def _hex(colour: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))


def legend_rows(class_map: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """One row per class: its name, overlay colour and share of the frame's pixels."""
    counts = np.bincount(class_map.ravel().astype(np.int64), minlength=len(class_names))[:len(class_names)]
    colours = palette(len(class_names))
    total = max(int(class_map.size), 1)
    return [{"class": name, "colour": _hex(colours[i]), "share": float(counts[i]) / total}
            for i, name in enumerate(class_names)]


def legend_html(rows: list[dict[str, Any]]) -> str:
    """The legend as a small HTML table (colour swatch, class, share in %)."""
    body = "".join(
        f'<tr><td><span style="display:inline-block;width:1em;height:1em;background:{r["colour"]}"></span></td>'
        f'<td class="legend-class">{html.escape(r["class"])}</td><td>{100 * r["share"]:.1f} %</td></tr>'
        for r in rows)
    return f'<table class="surgenet-legend"><tr><th></th><th>class</th><th>share of image</th></tr>{body}</table>'


def scores_html(scores: LabelScores) -> str:
    """A multi-label answer as a small HTML table: label, probability (bar and %), decision at the threshold."""
    yes, no = DECISION_WORDS.get(scores.task, ("yes", "no"))
    body = "".join(
        f'<tr><td class="score-label">{html.escape(name)}</td>'
        f'<td><span style="display:inline-block;width:{100 * p:.0f}px;height:0.8em;background:#4a90d9"></span></td>'
        f'<td>{100 * p:.1f} %</td><td class="score-decision">{yes if p >= scores.threshold else no}</td></tr>'
        for name, p in scores.probabilities.items())
    head = f"<tr><th>{html.escape(LABEL_NOUNS.get(scores.task, scores.task))}</th><th></th><th>probability</th><th>at {scores.threshold:g}</th></tr>"
    return f'<table class="surgenet-scores">{head}{body}</table>'


def load_frame(image: Any, max_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES) -> np.ndarray:
    """An uploaded frame (path, PIL image or array) as RGB uint8, refusing what is not a sane frame
    (a file above ``max_bytes`` before it is opened, a frame above MAX_FRAME_PIXELS before it is decoded)."""
    if image is None:
        raise InputError("no frame: upload an image (PNG or JPEG) or pick one of the examples.")
    if isinstance(image, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        if Path(image).is_file():
            check_upload_size(image, max_bytes)

        try:
            with Image.open(image) as probe:
                width, height = probe.size
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{Path(image).name} is not an image PNG/JPEG could be read from ({exc}).") from exc
        if width * height > MAX_FRAME_PIXELS:
            raise InputError(f"the image is {width}x{height} pixels; frames up to {MAX_FRAME_PIXELS // 10**6} "
                             "megapixels are accepted. Downscale it first.")
    return as_rgb_array(image)


def analyse_frame(catalog: ModelCatalog, image: Any, segmentation: str,
                  multi_label: str | Sequence[str | None] | None = None, alpha: float = 0.5,
                  max_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES) -> FrameAnalysis:
    """Segment one frame, and score it with each multi-label model chosen (a CVS model, a tools
    model: at most one per task; ``None`` entries are skipped)."""
    labels = [multi_label] if isinstance(multi_label, str) else [m for m in (multi_label or ()) if m]
    choices = [catalog.get(label) for label in labels]
    for label, c in zip(labels, choices):
        if c.task not in MULTI_LABEL_TASKS:
            raise InputError(f"{label} is a {c.task} model; choose a {' or '.join(MULTI_LABEL_TASKS)} model there.")
    tasks = [c.task for c in choices]
    if len(set(tasks)) < len(tasks):
        raise InputError(f"choose at most one model per task (got {', '.join(tasks)}).")
    frame = load_frame(image, max_bytes)
    seconds, notes = {}, []
    choice = catalog.get(segmentation)
    if choice.task != "segmentation":
        raise InputError(f"{segmentation} is a {choice.task} model; choose a segmentation model.")
    predictor = catalog.predictor(segmentation)  # loaded on first use: not part of the prediction's time
    start = time.perf_counter()
    result = predictor.predict(frame)
    seconds[segmentation] = time.perf_counter() - start
    if not choice.trained:
        notes.append(f"{choice.source}: the segmentation layers are untrained, so this overlay is meaningless; "
                     "start the app with a fine-tuned folder (surgenet-train finetune) for real predictions.")
    scores: dict[str, LabelScores] = {}
    for label, c in zip(labels, choices):
        label_predictor = catalog.predictor(label)
        start = time.perf_counter()
        scores[c.task] = LabelScores.of(c.task, label_predictor.predict(frame))
        seconds[label] = time.perf_counter() - start
        if not c.trained:
            notes.append(f"{c.source}: the {c.task} head is untrained; its probabilities are meaningless.")
    return FrameAnalysis(overlay=result.overlay(alpha=alpha), legend=legend_rows(result.class_map, result.class_names),
                         scores=scores, seconds=seconds, notes=notes)


def _clip_stride(path: Path, fps: float) -> tuple[int, float]:
    """Decode stride to analyse about ``fps`` frames per second, and the video's own frame rate."""
    av = import_av("app")

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream.")
            rate = float(container.streams.video[0].average_rate or 25)
    except av.error.FFmpegError as exc:
        raise InputError(f"{path.name} cannot be decoded as a video ({exc}); upload an MP4/AVI/MOV clip.") from exc
    return max(1, round(rate / fps)), rate


def analyse_clip(catalog: ModelCatalog, video: str | Path, out_dir: str | Path, phase: str | None = None,
                 segmentation: str | None = None, fps: float = DEFAULT_CLIP_FPS,
                 max_seconds: float = DEFAULT_MAX_SECONDS, alpha: float = 0.5,
                 multi_label: str | None = None, max_bytes: int | None = DEFAULT_MAX_UPLOAD_BYTES) -> ClipAnalysis:
    """Phase probabilities over a clip, a multi-label model's (tools, CVS) probabilities per frame
    and, with a segmentation model, the overlaid clip.

    The clip is analysed at ``fps`` frames per second for its first ``max_seconds``; the phase
    model runs online over those frames, as it would live; the others see each frame on its own.
    """
    if video is None:
        raise InputError("no clip: upload a short video (MP4, AVI, MOV).")
    path = Path(video)
    if not path.is_file():
        raise InputError(f"{path} does not exist.")
    check_upload_size(path, max_bytes)  # before FFmpeg opens it
    if not phase and not segmentation and not multi_label:
        raise InputError("choose a phase, segmentation or multi-label (tools, CVS) model.")
    label_choice = catalog.get(multi_label) if multi_label else None
    if label_choice is not None and label_choice.task not in MULTI_LABEL_TASKS:
        raise InputError(f"{multi_label} is a {label_choice.task} model; choose a "
                         f"{' or '.join(MULTI_LABEL_TASKS)} model for the probabilities over time.")
    check_number("fps", fps, "fps")  # the page's slider says 0.5..10; a request to the API may say anything
    check_number("seconds", max_seconds, "max_seconds")
    stride, _ = _clip_stride(path, fps)
    seconds: dict[str, float] = {}
    notes: list[str] = []
    times: list[float] = []
    phase_names: list[str] = []
    probabilities: list[np.ndarray] = []
    if phase:  # the phase model runs online over the sampled frames, keeping its state
        predictor = catalog.predictor(phase)
        phase_names = list(predictor.class_names)
        start = time.perf_counter()
        for result in predictor.predict_images(_Images(path, stride, max_seconds, times, notes)):
            probabilities.append(result.probabilities)
        seconds[phase] = time.perf_counter() - start
    out_path = None
    if segmentation:  # a second decoding pass: cheap next to the model, and memory stays flat
        predictor = catalog.predictor(segmentation)
        out_path = inside(out_dir, Path(out_dir) / f"{safe_name(path.stem, 'clip')}_overlay.mp4")
        seg_times: list[float] = []
        start = time.perf_counter()
        with VideoWriter(out_path, fps=fps) as writer:  # H.264 that browsers play, written atomically
            for result in predictor.predict_images(_Images(path, stride, max_seconds, seg_times, notes)):
                writer.write(result.overlay(alpha=alpha))
        seconds[segmentation] = time.perf_counter() - start
        times = times or seg_times
    label_names: list[str] = []
    label_rows: list[np.ndarray] = []
    threshold = 0.5
    if label_choice is not None:  # frame by frame, like the predictor on a video
        predictor = catalog.predictor(multi_label)
        label_names, threshold = list(predictor.class_names), float(predictor.threshold)
        label_times: list[float] = []
        start = time.perf_counter()
        for result in predictor.predict_images(_Images(path, stride, max_seconds, label_times, notes)):
            label_rows.append(result.probabilities)
        seconds[multi_label] = time.perf_counter() - start
        times = times or label_times
    if not times:
        raise InputError(f"{path.name} holds no decodable frame.")
    for label in (phase, segmentation, multi_label):
        if label and not catalog.get(label).trained:
            choice = catalog.get(label)
            notes.append(f"{choice.source}: the {choice.task} layers are untrained; this output is meaningless.")
    probs = np.stack(probabilities) if probabilities else np.zeros((len(times), 0), np.float32)
    label_probs = np.stack(label_rows) if label_rows else np.zeros((len(times), 0), np.float32)
    return ClipAnalysis(video=out_path, times=np.asarray(times, np.float64), phase_names=phase_names,
                        phase_probabilities=probs, seconds=seconds, notes=notes,
                        label_task=label_choice.task if label_choice else None, label_names=label_names,
                        label_probabilities=label_probs, label_threshold=threshold)


class _Images:
    """The sampled frames of a clip as images, recording each frame's time as it is decoded."""

    def __init__(self, path: Path, stride: int, max_seconds: float, times: list[float],
                 notes: list[str] | None = None) -> None:
        self.path, self.stride, self.max_seconds, self.times = path, stride, max_seconds, times
        self.notes = notes  # a clip that ends before the frames it announces is noted here

    def _ended_early(self, exc: Exception) -> None:
        note = f"{self.path.name}: {exc}".replace(str(self.path), self.path.name)
        if self.notes is not None and note not in self.notes:
            self.notes.append(note)

    def __iter__(self) -> Iterator[np.ndarray]:
        self.times.clear()
        for frame in iter_video(self.path, stride=self.stride, on_partial=self._ended_early):
            t = frame.time if frame.time is not None else frame.index / 25.0
            if t > self.max_seconds:
                return
            self.times.append(t)
            yield frame.image


def phase_timeline_figure(clip: ClipAnalysis):
    """Phase probabilities over time (lines) above the predicted phase as a coloured band."""
    plt = pyplot()
    from matplotlib.patches import Patch

    names = clip.phase_names
    colours = palette(len(names) + 1)[1:] / 255.0  # skip the background black
    fig, (top, band) = plt.subplots(2, 1, figsize=(9, 3.6), sharex=True,
                                    gridspec_kw={"height_ratios": [4, 1]}, constrained_layout=True)
    for p, name in enumerate(names):
        top.plot(clip.times, clip.phase_probabilities[:, p], color=colours[p], lw=1.5, label=name)
    top.set_ylim(0, 1)
    top.set_ylabel("probability")
    top.set_title("Phase over time")
    edges = _edges(clip.times)
    for i, phase in enumerate(clip.phases):
        band.axvspan(edges[i], edges[i + 1], color=colours[phase], lw=0)
    band.set_yticks([])
    band.set_xlabel("time (s)")
    band.set_xlim(edges[0], edges[-1])
    band.legend(handles=[Patch(color=colours[p], label=n) for p, n in enumerate(names)], loc="upper center",
                bbox_to_anchor=(0.5, -0.9), ncol=min(4, max(1, len(names))), fontsize=8, frameon=False)
    return fig


def labels_over_time_figure(clip: ClipAnalysis):
    """A multi-label model over time: each label's probability (lines, the threshold dashed) above
    one band per label, coloured where it is at or above the threshold (tools: present)."""
    plt = pyplot()

    names, task = clip.label_names, clip.label_task or "labels"
    colours = palette(len(names) + 1)[1:] / 255.0
    fig, (top, band) = plt.subplots(2, 1, figsize=(9, 2.6 + 0.25 * len(names)), sharex=True,
                                    gridspec_kw={"height_ratios": [4, max(1, len(names)) / 2]},
                                    constrained_layout=True)
    for k, name in enumerate(names):
        top.plot(clip.times, clip.label_probabilities[:, k], color=colours[k], lw=1.5, label=name)
    top.axhline(clip.label_threshold, color="grey", ls="--", lw=1)
    top.set_ylim(0, 1)
    top.set_ylabel("probability")
    top.set_title(f"{task} over time (dashed: threshold {clip.label_threshold:g})")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    edges = _edges(clip.times)
    for k in range(len(names)):
        on = clip.label_probabilities[:, k] >= clip.label_threshold
        band.broken_barh([(edges[i], edges[i + 1] - edges[i]) for i in np.flatnonzero(on)], (k + 0.1, 0.8),
                         color=colours[k])
    band.set_yticks(np.arange(len(names)) + 0.5, names, fontsize=8)
    band.set_ylim(len(names), 0)
    band.set_xlabel("time (s)")
    band.set_xlim(edges[0], edges[-1])
    return fig


def _edges(times: np.ndarray) -> np.ndarray:
    """Bin edges around each sample time, so each predicted phase colours its own interval."""
    if len(times) == 1:
        return np.array([times[0] - 0.5, times[0] + 0.5])
    mids = (times[1:] + times[:-1]) / 2
    return np.concatenate([[times[0] - (mids[0] - times[0])], mids, [times[-1] + (times[-1] - mids[-1])]])
