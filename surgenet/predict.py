"""``Predictor``: a task model on images, folders and videos, streaming, results at each frame's size.

The Predictor runs any *backend*: a surgenet task model (PyTorch), or any callable that maps a
normalised float32 NCHW ``numpy`` batch to logits and carries a ``config`` dict (``task``,
``num_classes``, ``class_names``, ``mean``, ``std``, ``input_size``), the protocol of the runners
of :mod:`surgenet.runtime` (ONNX Runtime, OpenVINO, TensorRT, compiled PyTorch). Preprocessing and postprocessing are the same
for both, so an exported model gives the PyTorch model's results.

A phase model carries a temporal state from frame to frame. Its exported form is the online step
``(frame, *state) -> (logits, *next_state)``; a runner of it (``config["streaming"]`` true) also
offers ``run(feeds) -> outputs`` and ``initial_state(batch) -> states``, and the Predictor keeps
the state itself, one stream per video, so one runner serves any number of videos in turn.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np
import torch

from .devices import resolve_device
from .exceptions import InputError
from .io import Frame, as_rgb_array, is_video, iter_video, list_images
from .io.video import PartialHandler
from .models.base import SurgeNetModel
from .postprocess import label_names, label_probabilities, segmentation_labels, segmentation_probabilities
from .results import MULTI_LABEL_RESULTS, FrameResult, PhaseResult, SegmentationResult
from .tasks import MULTI_LABEL_TASKS, TASKS
from .transforms import create_transform

logger = logging.getLogger(__name__)

ErrorHandler = Callable[[str, Exception], None]
REQUIRED_CONFIG = ("task", "num_classes", "mean", "std", "input_size")


@runtime_checkable
class InferenceBackend(Protocol):
    """An exported model: ``backend(x)`` with x float32 (N, 3, H, W) normalised -> logits array."""

    config: dict[str, Any]

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def _log_error(source: str, exc: Exception) -> None:
    logger.warning("skipped %s: %s", source, exc)


def _check_streaming_backend(backend: Any, config: dict[str, Any]) -> None:
    """A phase backend must be the streaming runner of an exported online step (see the module doc)."""
    fix = ("pass the PyTorch PhaseModel (surgenet.load_model) or a runner of its exported online step "
           "(surgenet_export.load_runner on the output of surgenet-export --task phase).")
    if not config.get("streaming"):
        raise InputError("phase prediction carries a temporal state from frame to frame, which this backend's "
                         "config does not declare (streaming: true); " + fix)
    missing = [k for k in ("state_names",) if k not in config] + \
        [a for a in ("run", "initial_state") if not callable(getattr(backend, a, None))]
    if missing:
        raise InputError(f"a streaming phase backend needs {', '.join(missing)}; " + fix)


def _default_device(model: torch.nn.Module) -> torch.device:
    current = next(model.parameters()).device
    if current.type != "cpu":
        return current
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Runs a task model on frames and yields one result per frame.

    Args:
        model: a surgenet task model, or an exported backend (:class:`InferenceBackend`).
        device: where a PyTorch model runs; default the model's accelerator, else CUDA if
            available, else CPU. The model is moved there.
        batch_size: frames per forward pass. Phase models still predict online: the backbone
            sees a batch, the causal temporal model then steps frame by frame.
        config: the backend's config when it has no ``config`` attribute.
        normalization: override the model's normalisation (``"default"`` or ``"surgical"``).
        threshold: probability at which a CVS criterion counts as met, or a tool as present.
        keep_images: keep each frame in its segmentation result (needed for ``overlay()``).

    The caller's model is put in eval mode only during each forward pass; the training flag of
    every submodule is restored afterwards.
    """

    def __init__(self, model: SurgeNetModel | InferenceBackend, device: str | torch.device | None = None,
                 batch_size: int = 8, config: dict[str, Any] | None = None, normalization: str | None = None,
                 threshold: float = 0.5, keep_images: bool = True) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.keep_images = keep_images
        if isinstance(model, SurgeNetModel):
            self.device = resolve_device(device) if device is not None else _default_device(model)
            self.model: SurgeNetModel | None = model.to(self.device)
            self.backend: Callable | None = None
            config = model.config
        elif callable(model):
            self.device = torch.device("cpu")  # postprocessing of numpy outputs
            self.model, self.backend = None, model
            config = config if config is not None else getattr(model, "config", None)
            if not isinstance(config, dict):
                raise InputError("an exported backend needs a config dict (task, num_classes, mean, std, input_size): "
                                 "pass config=... or give the backend a .config attribute.")
        else:
            raise InputError(f"Predictor takes a surgenet task model or a callable backend, "
                             f"not {type(model).__name__}.")
        missing = [k for k in REQUIRED_CONFIG if k not in config]
        if missing:
            raise InputError(f"the model config lacks {', '.join(missing)}.")
        self.config = dict(config)
        self.task: str = self.config["task"]
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r} in the config; valid: {', '.join(TASKS)}.")
        if self.task == "phase" and self.model is None:
            _check_streaming_backend(self.backend, self.config)
        n = int(self.config["num_classes"])
        self.class_names: list[str] = list(self.config.get("class_names") or [str(i) for i in range(n)])
        self.transform = create_transform(self.config, normalization=normalization)

    # ----------------------------------------------------------------------------- public API
    def predict(self, image: Any) -> FrameResult:
        """One image (path, PIL image or numpy uint8 RGB array) -> its result.

        A phase model sees it as the first frame of a video.
        """
        source = str(image) if isinstance(image, (str, Path)) else ""
        if source and (Path(source).is_dir() or is_video(Path(source))):
            raise InputError(f"{source} is a {'folder' if Path(source).is_dir() else 'video'}; predict() takes one "
                             "image. Use predict_path() (or predict_folder / predict_video), which yields a result "
                             "per frame.")
        frame = Frame(0, Path(source).stem if source else "image", as_rgb_array(image), None, source)
        return next(self._run(iter([frame])))

    def predict_images(self, images: Iterable[Any]) -> Iterator[FrameResult]:
        """Results for a sequence of images, in order (phase: as consecutive frames of one video).

        ``images`` may be a generator fed live (e.g. from a capture card); with ``batch_size=1``
        each result comes out as soon as its frame is in.
        """
        frames = (Frame(i, f"image_{i:06d}", as_rgb_array(img), None, str(img) if isinstance(img, (str, Path)) else "")
                  for i, img in enumerate(images))
        return self._run(frames)

    def predict_folder(self, folder: str | Path, recursive: bool = False,
                       on_error: ErrorHandler | None = None) -> Iterator[FrameResult]:
        """The images of ``folder`` in natural order; unreadable files go to ``on_error`` (default:
        a logged warning) and are skipped."""
        return self._run(self._folder_frames(list_images(folder, recursive), on_error or _log_error))

    def predict_video(self, path: str | Path, stride: int = 1,
                      on_partial: PartialHandler | None = None) -> Iterator[FrameResult]:
        """Every ``stride``-th frame of a video, decoded as a stream (memory does not grow with its length).

        A video that ends before the frames its container announces gives the results of its
        readable frames, then a :class:`~surgenet.io.PartialVideoError` (to ``on_partial``, or raised)."""
        return self._run(iter_video(path, stride, on_partial=on_partial))

    def predict_path(self, path: str | Path, stride: int = 1, recursive: bool = False,
                     on_error: ErrorHandler | None = None,
                     on_partial: PartialHandler | None = None) -> Iterator[FrameResult]:
        """An image file, a folder of images or a video, whichever ``path`` is."""
        path = Path(path)
        if path.is_dir():
            return self.predict_folder(path, recursive, on_error)
        if not path.exists():
            raise InputError(f"{path} does not exist.")
        if is_video(path):
            return self.predict_video(path, stride, on_partial)
        return self._run(self._folder_frames([path], on_error or _log_error))

    def probabilities(self, image: Any) -> np.ndarray:
        """Per-class probabilities ``(H, W, C)`` float32 of one image at its own size (segmentation).

        Softmax over the classes; a one-logit model gives (background, foreground). This is the
        segmenter of keyframe mode (:meth:`predict_keyframes`).
        """
        if self.task != "segmentation":
            raise InputError(f"probabilities() is for segmentation models; this one does {self.task}.")
        image = as_rgb_array(image)
        return segmentation_probabilities(self.logits(image), image.shape[:2])

    def logits(self, image: Any) -> torch.Tensor:
        """The segmentation model's raw logits ``(C, h, w)`` of one image (preprocessed here)."""
        return self._forward(self.transform(as_rgb_array(image))[None])[0]

    def predict_keyframes(self, path: str | Path, every: int = 10, method: str = "flow",
                          min_confidence: float | None = None, fusion: float = 0.5,
                          on_error: ErrorHandler | None = None, on_partial: PartialHandler | None = None,
                          **propagation: Any) -> Iterator[SegmentationResult]:
        """Keyframe mode for a video or an ordered folder (extra ``video``): the model runs on
        keyframes only and the masks are propagated in between (``method``: ``flow``, ``raft`` or
        ``features``; see :mod:`surgenet.video.keyframes` for when a frame becomes a keyframe).

        One result per frame, streaming. ``self.keyframe_stats`` counts the frames and the model
        calls (``.saving``: the share of frames that did not need the model).
        """
        from .video.frame_source import check_source, iter_frames
        from .video.keyframes import KeyframePolicy, KeyframeSegmenter
        from .video.methods import create_propagator

        if self.task != "segmentation":
            raise InputError(f"keyframe mode propagates masks; this model does {self.task}.")
        check_source(path)
        policy = KeyframePolicy(every=every, min_confidence=min_confidence)
        runner = KeyframeSegmenter(self.probabilities, create_propagator(method, self.model, **propagation),
                                   policy, fusion)
        self.keyframe_stats = runner.stats
        names = list(self.class_names)
        if int(self.config["num_classes"]) == 1:  # one logit: foreground/background, as in predict()
            names = ["background", *names]

        def results() -> Iterator[SegmentationResult]:
            for tf in runner.run(iter_frames(path, on_error, on_partial=on_partial)):
                yield SegmentationResult(index=tf.index, source=tf.source, time=tf.time, class_names=names,
                                         class_map=tf.class_map, image=tf.image if self.keep_images else None)

        return results()

    # ----------------------------------------------------------------------------- internals
    @staticmethod
    def _folder_frames(files: list[Path], on_error: ErrorHandler) -> Iterator[Frame]:
        for index, file in enumerate(files):
            try:
                image = as_rgb_array(file)
            except InputError as exc:
                on_error(str(file), exc)
                continue
            yield Frame(index, file.stem, image, None, str(file))

    def _run(self, frames: Iterator[Frame]) -> Iterator[FrameResult]:
        state = None
        while True:
            chunk = [f for _, f in zip(range(self.batch_size), frames)]
            if not chunk:
                return
            batch = torch.stack([self.transform(f.image) for f in chunk])
            finishers, state = self.infer_batch(chunk, batch, state)
            for finish in finishers:
                yield finish()

    def infer_batch(self, chunk: list[Frame], batch: torch.Tensor,
                    state: Any = None) -> tuple[list[Callable[[], FrameResult]], Any]:
        """The inference stage of a batch of consecutive frames (``batch``: their ``self.transform``).

        Returns one callable per frame that does its postprocessing (resize back, argmax) and gives
        its result, so a pipeline (:mod:`surgenet.realtime`) can run it on another thread, and the
        temporal state of a phase model (``None`` at the start of a video; other tasks: ``None``).
        """
        if self.task == "phase":
            results, state = self._phase(chunk, batch, state)
            return [lambda r=r: r for r in results], state
        logits = self._forward(batch)
        return [lambda f=f, i=i: self._postprocess(f, logits[i]) for i, f in enumerate(chunk)], None

    @contextmanager
    def _eval(self):
        modules = list(self.model.modules())
        flags = [m.training for m in modules]
        self.model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            for module, flag in zip(modules, flags):
                module.training = flag

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.model is not None:
            with self._eval():
                return self.model(batch.to(self.device)).float()
        out = self.backend(np.ascontiguousarray(batch.numpy(), dtype=np.float32))
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def _phase(self, chunk: list[Frame], batch: torch.Tensor, state):
        if self.model is None:
            return self._phase_backend(chunk, batch, state)
        with self._eval():
            features = self.model.embed(batch.to(self.device))
            if state is None:
                state = self.model.init_state(1, device=self.device)
            results = []
            for i, frame in enumerate(chunk):
                logits, state = self.model.step_features(features[i:i + 1], state)
                probs = label_probabilities(logits[0], "phase")
                results.append(PhaseResult(index=frame.index, source=frame.source, time=frame.time,
                                           class_names=self.class_names, phase=int(probs.argmax()),
                                           probabilities=probs))
        return results, state

    def _phase_backend(self, chunk: list[Frame], batch: torch.Tensor, state: list[np.ndarray] | None):
        """The exported online step, one frame at a time; the state stays here, not in the runner."""
        if state is None:
            state = [np.asarray(s, dtype=np.float32) for s in self.backend.initial_state(1)]
        frames = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        input_name = list(getattr(self.backend, "input_names", None) or ["input"])[0]
        results = []
        for i, frame in enumerate(chunk):
            feeds = {input_name: frames[i:i + 1], **dict(zip(self.config["state_names"], state))}
            logits, *state = self.backend.run(feeds)
            state = [np.asarray(s, dtype=np.float32) for s in state]
            probs = label_probabilities(torch.from_numpy(np.asarray(logits, dtype=np.float32)[0]), "phase")
            results.append(PhaseResult(index=frame.index, source=frame.source, time=frame.time,
                                       class_names=self.class_names, phase=int(probs.argmax()),
                                       probabilities=probs))
        return results, state

    def _postprocess(self, frame: Frame, logits: torch.Tensor) -> FrameResult:
        common = dict(index=frame.index, source=frame.source, time=frame.time, class_names=self.class_names)
        if self.task in MULTI_LABEL_TASKS:  # CVS criteria, tools: one sigmoid per label
            probs = label_probabilities(logits, self.task)
            return MULTI_LABEL_RESULTS[self.task](**common, probabilities=probs, threshold=self.threshold)
        common["class_names"] = label_names(self.class_names, logits.shape[0])
        return SegmentationResult(**common, class_map=segmentation_labels(logits, frame.image.shape[:2]),
                                  image=frame.image if self.keep_images else None)
