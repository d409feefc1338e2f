"""Semi-supervised mode (the DAVIS protocol): the mask of the first frame, carried through the rest."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..exceptions import InputError
from .frame_source import Frame
from .propagate import Propagator, TrackedFrame, labels_of, one_hot


def propagate_mask(frames: Iterable[Frame], first_mask: np.ndarray, propagator: Propagator,
                   num_classes: int | None = None) -> Iterator[TrackedFrame]:
    """Yield every frame with its labels: the first frame's are ``first_mask`` (H, W) ids, the
    others come from ``propagator``. Streams: one frame (and the propagator's memory) at a time."""
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise InputError("no readable frame to start from.")
    first_mask = np.asarray(first_mask)
    if first_mask.shape != first.image.shape[:2]:
        raise InputError(f"the first mask is {first_mask.shape[1]}x{first_mask.shape[0]} but frame {first.name} is "
                         f"{first.image.shape[1]}x{first.image.shape[0]}; give the mask at the frame's size.")
    probs = one_hot(first_mask, num_classes)
    propagator.start(first.image, probs)
    yield TrackedFrame(first.index, first.name, first.image, labels_of(probs), 1.0, keyframe=True, reason="given",
                       time=first.time, source=first.source)
    for frame in iterator:
        step = propagator.step(frame.image)
        yield TrackedFrame(frame.index, frame.name, frame.image, labels_of(step.probs), step.score,
                           warp_labels=step.warp_labels, time=frame.time, source=frame.source)
