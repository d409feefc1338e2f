"""Instrument tracks: connected instrument regions with identities that persist across frames.

Each frame, every live track predicts its mask in the new frame: a track seen alone in the last
frame is carried by the propagation's motion (``warp_labels`` of the step); a track that was part
of a joint region, or unseen, moves its last solo mask by its own velocity (constant velocity),
because the flow inside a joint region cannot tell two crossing instruments apart. Instrument
regions (connected components of the instrument classes) are matched to the predictions by IoU,
with the Hungarian method (or greedily). A region that covers most of the prediction of several
tracks (instruments touching or crossing) is split among them by the nearest predicted pixel, so
every identity survives the crossing. A track without a region lives ``max_age`` frames.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..exceptions import InputError
from ..io.atomic import atomic_target
from ._deps import cv2 as _cv2
from ._deps import scipy_optimize

MATCHING = ("hungarian", "greedy")


@dataclass
class TrackRow:
    """One visible track in one frame (a row of the track CSV)."""

    frame: int
    name: str
    track_id: int
    class_id: int
    area: int
    x: int  # bounding box, pixels
    y: int
    width: int
    height: int
    cx: float  # centroid
    cy: float
    state: str  # new, tracked (matched), merged (split out of a joint region), recovered (after a gap)


@dataclass
class _Track:
    class_id: int
    template: np.ndarray  # the last mask seen alone (bool, frame size)
    centroid: np.ndarray  # (x, y) of the template
    velocity: np.ndarray  # (vx, vy) pixels per frame, from clean frames only
    since: int = 0  # frames since the template was taken
    state: str = "new"


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]) if len(xs) else np.zeros(2)


def _shift(mask: np.ndarray, offset: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    m = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    return cv2.warpAffine(mask.astype(np.uint8), m, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST) > 0


class InstrumentTracker:
    """Gives every instrument region a track id that persists across frames.

    Where a track was seen alone in the last frame, its mask is carried by the propagation's
    motion; where it was part of a joint region or unseen, by its own velocity (constant-velocity
    prediction of its last solo mask), because the flow inside a joint region cannot tell two
    crossing instruments apart.

    Args:
        classes: class ids that are instruments.
        min_area: regions smaller than this (pixels) are noise and get no track.
        iou_threshold: least IoU for a region to continue a track.
        max_age: frames a track survives without a region of its own.
        matching: ``hungarian`` (optimal assignment) or ``greedy`` (highest IoU first).
    """

    def __init__(self, classes: Sequence[int], min_area: int = 64, iou_threshold: float = 0.1, max_age: int = 10,
                 matching: str = "hungarian") -> None:
        if not classes:
            raise InputError("instrument tracks need at least one instrument class id.")
        if matching not in MATCHING:
            raise InputError(f"unknown matching {matching!r}; valid: {', '.join(MATCHING)}.")
        self.classes = [int(c) for c in classes]
        self.min_area, self.iou_threshold, self.max_age = int(min_area), float(iou_threshold), int(max_age)
        self.matching = matching
        self.instances: np.ndarray | None = None  # (H, W) int32 track ids of the last frame, 0 = none
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1

    @property
    def track_count(self) -> int:
        """Tracks started so far."""
        return self._next_id - 1

    def _regions(self, class_map: np.ndarray) -> list[tuple[np.ndarray, int]]:
        cv2 = _cv2()
        out = []
        for c in self.classes:
            binary = (class_map == c).astype(np.uint8)
            if not binary.any():
                continue
            n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            out.extend((labels == i, c) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= self.min_area)
        return out

    def _assign(self, iou: np.ndarray) -> list[tuple[int, int]]:
        if iou.size == 0:
            return []
        if self.matching == "hungarian":
            rows, cols = scipy_optimize().linear_sum_assignment(-iou)
            pairs = list(zip(rows.tolist(), cols.tolist()))
        else:
            pairs, used_r, used_c = [], set(), set()
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                r, c = divmod(int(flat), iou.shape[1])
                if r not in used_r and c not in used_c:
                    pairs.append((r, c))
                    used_r.add(r)
                    used_c.add(c)
        return [(r, c) for r, c in pairs if iou[r, c] >= self.iou_threshold]

    @staticmethod
    def _split(region: np.ndarray, predicted: dict[int, np.ndarray], ids: list[int]) -> list[np.ndarray]:
        """Pixels of ``region`` split among ``ids`` by the nearest pixel of each one's predicted mask."""
        from scipy.ndimage import distance_transform_edt

        dist = np.stack([distance_transform_edt(~predicted[i]) for i in ids])
        nearest = dist.argmin(0)
        return [region & (nearest == k) for k in range(len(ids))]

    def _predict(self, warp_labels: Callable[[np.ndarray], np.ndarray] | None) -> dict[int, np.ndarray]:
        """Each live track's expected mask in the current frame."""
        carried = None
        if self.instances is not None and any(t.since == 0 for t in self._tracks.values()):
            carried = warp_labels(self.instances) if warp_labels is not None else self.instances
        out = {}
        for i, track in self._tracks.items():
            if track.since == 0 and carried is not None and track.state != "merged":
                out[i] = carried == i
            else:
                out[i] = _shift(track.template, track.velocity * (track.since + 1))
        return out

    def update(self, class_map: np.ndarray, warp_labels: Callable[[np.ndarray], np.ndarray] | None = None,
               frame: int = 0, name: str = "") -> list[TrackRow]:
        """Track ids for the regions of ``class_map``; ``warp_labels`` carries the previous frame's ids
        here (None: no motion, e.g. the first frame). Returns one row per visible track."""
        class_map = np.asarray(class_map)
        if self.instances is not None and self.instances.shape != class_map.shape:
            raise InputError(f"class map {class_map.shape} differs in size from the previous one "
                             f"{self.instances.shape}.")
        predicted = self._predict(warp_labels)
        area = {i: int(m.sum()) for i, m in predicted.items()}
        assigned: list[tuple[np.ndarray, int, int, str]] = []  # mask, class, id, state
        rest: list[tuple[np.ndarray, int]] = []
        free = [i for i in predicted if area[i] > 0]
        for mask, c in self._regions(class_map):
            inside = [i for i in free if (mask & predicted[i]).sum() >= 0.5 * area[i]]
            if len(inside) >= 2:  # instruments that touch or cross: keep both identities
                for part, i in zip(self._split(mask, predicted, inside), inside):
                    if part.any():
                        assigned.append((part, c, i, "merged"))
                free = [i for i in free if i not in inside]
            else:
                rest.append((mask, c))
        iou = np.zeros((len(rest), len(free)))
        for r, (mask, _) in enumerate(rest):
            size = mask.sum()
            for k, i in enumerate(free):
                inter = (mask & predicted[i]).sum()
                iou[r, k] = inter / (size + area[i] - inter) if inter else 0.0
        matched = set()
        for r, k in self._assign(iou):
            i = free[k]
            assigned.append((*rest[r], i, "recovered" if self._tracks[i].since > 0 else "tracked"))
            matched.add(r)
        for r, (mask, c) in enumerate(rest):
            if r not in matched:
                assigned.append((mask, c, self._next_id, "new"))
                self._next_id += 1
        instances = np.zeros(class_map.shape, np.int32)
        rows = []
        for mask, c, i, state in sorted(assigned, key=lambda a: a[2]):
            instances[mask] = i
            centre = _centroid(mask)
            track = self._tracks.get(i)
            if track is None:
                self._tracks[i] = _Track(c, mask, centre, np.zeros(2), 0, state)
            elif state == "merged":  # keep the solo template and velocity; only the state changes
                track.since += 1
                track.state = state
            else:
                step = (centre - track.centroid) / (track.since + 1)
                track.velocity = step if track.state == "new" else 0.5 * track.velocity + 0.5 * step
                track.template, track.centroid, track.since, track.state = mask, centre, 0, state
            ys, xs = np.nonzero(mask)
            rows.append(TrackRow(frame, name, i, c, int(mask.sum()), int(xs.min()), int(ys.min()),
                                 int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1),
                                 round(float(centre[0]), 2), round(float(centre[1]), 2), state))
        seen = {a[2] for a in assigned}
        for i in list(self._tracks):
            if i not in seen:
                self._tracks[i].since += 1
                self._tracks[i].state = "lost"
                if self._tracks[i].since > self.max_age:
                    del self._tracks[i]
        self.instances = instances
        return rows


TRACK_FIELDS = [f for f in TrackRow.__dataclass_fields__]


class TrackWriter:
    """Streams track rows to a CSV that appears atomically when closed."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self._ctx = atomic_target(self.target)
        self._tmp = self._ctx.__enter__()
        self._handle = open(self._tmp, "w", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=TRACK_FIELDS)
        self._writer.writeheader()
        self.rows = 0

    def write(self, rows: Iterable[TrackRow]) -> None:
        for row in rows:
            self._writer.writerow(asdict(row))
            self.rows += 1

    def close(self, ok: bool = True) -> None:
        self._handle.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            exc = RuntimeError("track CSV abandoned")
            try:
                self._ctx.__exit__(RuntimeError, exc, None)
            except RuntimeError:
                pass
