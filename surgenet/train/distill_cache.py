"""The teacher's predictions, computed once and kept on disk as memory-mapped arrays.

Distillation runs many epochs over frames the teacher labels; running a large teacher every
epoch would cost more than training the student. The cache (a folder, ``OUT/teacher_cache``)
holds, per frame, in ``.npy`` files opened with ``numpy.lib.format.open_memmap``:

* ``images.npy``  (N, S, S, 3) uint8: the frame resized to the training size (bilinear, antialiased,
  as :class:`surgenet.transforms.ImageTransform`), decoded once, so epochs read no JPEG or video;
* ``logits.npy``  the teacher's logits in float16: segmentation (N, C, S/r, S/r), averaged over
  ``r x r`` blocks (``--cache-reduction``, default 4: 64x64 for 256 input, 1/16 of the pixels;
  the student's loss resizes them back bilinearly); CVS and tools (N, C);
* ``targets.npy`` the labels where a labelled set gave them: segmentation masks (N, S, S) uint8
  resized by nearest neighbour, 255 = ignore (and for every unlabelled frame); multi-label (N, C)
  float32, NaN for unlabelled frames;
* ``done.npy``    (N,) uint8: 1 once a frame's rows are flushed to disk.

A frame's rows are flushed before its ``done`` flag, so a run killed at any point resumes with
the frames that are done and computes only the others. ``key.json`` records what fixes the
contents (teacher weights digest, preprocessing, size, reduction, the frames): a cache whose key
differs from the run's is rebuilt, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..io.atomic import atomic_write_text
from ..io.masks import IGNORE_INDEX
from .seg_augment import image_to_tensor, resize_image, resize_mask

logger = logging.getLogger(__name__)

CACHE_FORMAT = "surgenet-teacher-cache/1"  # bump when what a cached array means changes
FILES = ("images.npy", "logits.npy", "targets.npy", "done.npy")


class FrameSet:
    """Frames from several sources as one sequence: ``frames[k] -> (PIL image, target or None)``.

    Unlabelled sources (:func:`surgenet.train.data.open_source`: folders, frame lists, videos at
    ``fps``) give ``target None``; labelled readers (:func:`surgenet.train.formats.open_dataset`)
    give their validated target.
    """

    def __init__(self, unlabelled: Sequence[Any] = (), labelled: Sequence[Any] = ()) -> None:
        self.parts = [(s, False) for s in unlabelled] + [(s, True) for s in labelled]
        self._starts = np.concatenate([[0], np.cumsum([len(s) for s, _ in self.parts])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, k: int):
        part = int(np.searchsorted(self._starts, k, side="right") - 1)
        source, labelled = self.parts[part]
        i = k - int(self._starts[part])
        if labelled:
            return source[i]
        return source.load(i), None

    def labelled_count(self) -> int:
        return sum(len(s) for s, labelled in self.parts if labelled)

    def digest(self) -> str:
        """SHA-256 of each source's name, kind and length, and of its first and last frame's path."""
        h = hashlib.sha256()
        for source, labelled in self.parts:
            name = getattr(source, "name", None) or str(getattr(source, "paths", [""])[0])
            h.update(f"{type(source).__name__}|{name}|{labelled}|{len(source)}|{getattr(source, 'fps', '')}\n".encode())
            paths = getattr(source, "paths", None)
            if paths is not None and len(paths):
                h.update(f"{paths[0]}|{paths[len(paths) - 1]}\n".encode())
        return h.hexdigest()


class _Decoded(torch.utils.data.Dataset):
    """Pending frames decoded and resized in DataLoader workers: ``(k, uint8 image, target)``."""

    def __init__(self, frames: FrameSet, pending: np.ndarray, size: int, task: str) -> None:
        self.frames, self.pending, self.size, self.task = frames, pending, size, task

    def __len__(self) -> int:
        return len(self.pending)

    def __getitem__(self, j: int):
        k = int(self.pending[j])
        image, target = self.frames[k]
        x = resize_image(image_to_tensor(image), (self.size, self.size))
        pixels = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        if self.task == "segmentation":
            mask = (np.full((self.size, self.size), IGNORE_INDEX, np.uint8) if target is None
                    else resize_mask(np.asarray(target), (self.size, self.size)).astype(np.uint8))
            return k, pixels, mask
        return k, pixels, None if target is None else np.asarray(target, np.float32)


def _collate(batch):
    return [b[0] for b in batch], np.stack([b[1] for b in batch]), [b[2] for b in batch]


class TeacherCache:
    """The cache folder of one run; :meth:`fill` computes what is missing, then the arrays read as memmaps."""

    def __init__(self, folder: Path, frames: FrameSet, task: str, num_outputs: int, size: int, reduction: int,
                 key: dict[str, Any]) -> None:
        if task == "segmentation" and size % reduction:
            raise ValueError(f"the cache reduction {reduction} must divide the image size {size}.")
        self.folder, self.frames, self.task = Path(folder), frames, task
        self.size, self.reduction, self.num_outputs = int(size), int(reduction), int(num_outputs)
        self.key = {"format": CACHE_FORMAT, "task": task, "size": self.size, "reduction": self.reduction,
                    "num_outputs": self.num_outputs, "frames": len(frames), "frames_digest": frames.digest(), **key}
        self.arrays: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ layout
    def _shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        n, s, c = len(self.frames), self.size, self.num_outputs
        if self.task == "segmentation":
            r = s // self.reduction
            return {"images.npy": ((n, s, s, 3), "uint8"), "logits.npy": ((n, c, r, r), "float16"),
                    "targets.npy": ((n, s, s), "uint8"), "done.npy": ((n,), "uint8")}
        return {"images.npy": ((n, s, s, 3), "uint8"), "logits.npy": ((n, c), "float16"),
                "targets.npy": ((n, c), "float32"), "done.npy": ((n,), "uint8")}

    def _open(self, mode: str) -> None:
        self.arrays = {}
        for name, (shape, dtype) in self._shapes().items():
            path = self.folder / name
            if mode == "w+":
                self.arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            else:
                arr = np.lib.format.open_memmap(path, mode=mode)
                if arr.shape != shape or arr.dtype != np.dtype(dtype):
                    raise ValueError(f"{path} holds {arr.dtype} {arr.shape}, expected {dtype} {shape}")
                self.arrays[name] = arr
        if mode == "w+":
            self.arrays["targets.npy"][:] = IGNORE_INDEX if self.task == "segmentation" else np.nan
            self.arrays["targets.npy"].flush()

    def _reusable(self) -> bool:
        path = self.folder / "key.json"
        if not path.is_file():
            return False
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            saved = {}
        stale = sorted(k for k in set(saved) | set(self.key) if saved.get(k) != self.key.get(k))
        if stale:
            logger.warning("teacher cache %s differs in %s; rebuilding it", self.folder, ", ".join(stale))
            return False
        try:
            self._open("r+")
        except (OSError, ValueError) as exc:
            logger.warning("teacher cache %s is unreadable (%s); rebuilding it", self.folder, exc)
            return False
        return True

    # ------------------------------------------------------------------ filling
    def fill(self, teacher: torch.nn.Module, mean: Sequence[float], std: Sequence[float], batch_size: int = 8,
             workers: int = 0, on_batch: Callable[[int], None] | None = None) -> int:
        """Run ``teacher`` on every frame not yet done; returns how many it computed now.

        ``mean``/``std``: the teacher's normalisation. ``on_batch(done_so_far)`` is called after each
        batch is on disk (progress hooks; tests interrupt the fill there).
        """
        from tqdm.auto import tqdm

        from .finetune_tasks import _device

        self.folder.mkdir(parents=True, exist_ok=True)
        if not self._reusable():
            for name in (*FILES, "key.json"):
                (self.folder / name).unlink(missing_ok=True)
            self._open("w+")
            atomic_write_text(self.folder / "key.json", json.dumps(self.key, indent=2, sort_keys=True) + "\n")
        done = self.arrays["done.npy"]
        pending = np.flatnonzero(done == 0)
        if len(pending) == 0:
            logger.info("teacher cache %s: all %d frames done, reused", self.folder, len(done))
            return 0
        logger.info("teacher cache %s: %d of %d frames to compute", self.folder, len(pending), len(done))
        m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
        loader = torch.utils.data.DataLoader(_Decoded(self.frames, pending, self.size, self.task),
                                             batch_size=batch_size, num_workers=workers, collate_fn=_collate)
        device = _device(teacher)
        teacher.eval()
        computed = 0
        with torch.inference_mode(), tqdm(total=len(pending), desc="teacher predictions", unit="frame",
                                          leave=False) as bar:
            for ks, pixels, targets in loader:
                x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0) - m) / s
                logits = teacher(x.to(device)).float().cpu()
                if self.task == "segmentation" and self.reduction > 1:
                    logits = F.avg_pool2d(logits, self.reduction)
                idx = np.asarray(ks)
                self.arrays["images.npy"][idx] = pixels
                self.arrays["logits.npy"][idx] = logits.numpy().astype(np.float16)
                for k, target in zip(ks, targets):
                    if target is not None:
                        self.arrays["targets.npy"][k] = target
                for name in ("images.npy", "logits.npy", "targets.npy"):
                    self.arrays[name].flush()
                done[idx] = 1  # only after the rows are on disk: a kill before this recomputes them
                done.flush()
                computed += len(ks)
                bar.update(len(ks))
                if on_batch is not None:
                    on_batch(computed)
        return computed

    def open_read(self) -> dict[str, np.ndarray]:
        """The complete cache as read-only memmaps (after :meth:`fill`)."""
        arrays = {name: np.lib.format.open_memmap(self.folder / name, mode="r") for name in FILES}
        if not arrays["done.npy"].all():
            raise RuntimeError(f"teacher cache {self.folder} is incomplete; run fill() first.")
        return arrays

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
