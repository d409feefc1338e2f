"""Video segmentation that follows the scene (extra ``video``: PyAV, OpenCV, SciPy).

One module per job:

* :mod:`.frames`: ordered frames of a video or a folder, first-frame masks.
* :mod:`.propagate`: the interface every propagation method has (:class:`Propagator`).
* :mod:`.methods`: the methods by name (:func:`create_propagator`).
* :mod:`.flow`: OpenCV DIS optical flow with a forward-backward consistency check.
* :mod:`.raft`: torchvision RAFT (small / large) from the local torch hub cache.
* :mod:`.features`: label propagation by backbone feature affinity (the DINO DAVIS protocol).
* :mod:`.semi`: semi-supervised mode, a first-frame mask carried through a sequence.
* :mod:`.keyframes`: keyframe mode, a segmenter on keyframes and propagation in between.
* :mod:`.tracks`: instrument regions with identities that persist across frames.
* :mod:`.track_draw`: tracks drawn on overlays (box, centroid, id; one colour per id).
* :mod:`.synthetic`: a sequence with known masks built from real footage (tests, benchmark).

Nothing here is imported by ``import surgenet``; OpenCV loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Propagator": "propagate", "PropagationStep": "propagate", "TrackedFrame": "propagate",
    "create_propagator": "methods", "DISFlowPropagator": "flow", "RAFTPropagator": "raft",
    "FeaturePropagator": "features", "propagate_mask": "semi", "KeyframePolicy": "keyframes",
    "KeyframeSegmenter": "keyframes", "InstrumentTracker": "tracks", "iter_frames": "frames",
    "read_first_mask": "frames", "draw_tracks": "track_draw", "track_colour": "track_draw",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'surgenet.video' has no attribute {name!r}")
