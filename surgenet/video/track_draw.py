"""Instrument tracks drawn on overlay frames: each track's box, centroid and id in a colour of its own.

The colour follows from the id alone (golden-ratio steps around the hue circle), so a track keeps
its colour in every frame and in every run, and neighbouring ids get clearly different hues.
"""

from __future__ import annotations

import colorsys
from typing import Iterable

import numpy as np

from ._deps import cv2 as _cv2
from .tracks import TrackRow

_GOLDEN = 0.6180339887498949


def track_colour(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of track ``track_id``: saturated, bright, the same in every frame."""
    hue = (0.1 + int(track_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light label backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma >= 128 else (255, 255, 255)


def draw_tracks(image: np.ndarray, rows: Iterable[TrackRow]) -> np.ndarray:
    """A copy of the RGB ``image`` with each visible track's box outline, centroid dot and id label.

    The label (the id on a filled patch of the track's colour) sits on the box's top-left corner,
    above the box where there is room, inside it otherwise. Sizes scale with the frame.
    """
    cv2 = _cv2()
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    line = max(1, round(min(height, width) / 360))
    scale = max(0.35, min(height, width) / 720)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for row in rows:
        colour = track_colour(row.track_id)
        x0, y0 = int(row.x), int(row.y)
        x1, y1 = x0 + int(row.width) - 1, y0 + int(row.height) - 1
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, line)
        cv2.circle(out, (int(round(row.cx)), int(round(row.cy))), line + 1, colour, -1)
        text = str(row.track_id)
        (tw, th), base = cv2.getTextSize(text, font, scale, 1)
        pad = 2
        box_h = th + base + 2 * pad
        top = y0 - box_h if y0 - box_h >= 0 else y0  # above the box, or inside it at the top edge
        left = min(max(0, x0), max(0, width - (tw + 2 * pad)))
        cv2.rectangle(out, (left, top), (left + tw + 2 * pad - 1, top + box_h - 1), colour, -1)
        cv2.putText(out, text, (left + pad, top + pad + th), font, scale, _text_colour(colour), 1, cv2.LINE_AA)
    return out


__all__ = ["draw_tracks", "track_colour"]
