"""``surgenet track`` overlays show each instrument track: box, centroid and id, in a colour that
stays with the id. Checked on the pixels against a run that draws no tracks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cv2")
pytest.importorskip("av")

from surgenet.cli import main  # noqa: E402
from surgenet.video.track_draw import track_colour  # noqa: E402
from tests.helpers.clips import write_clip  # noqa: E402

# Two instruments of the first frame's mask (classes 1 and 2, so tracks 1 and 2): x0, y0, x1, y1.
BOXES = {1: (10, 30, 39, 59), 2: (80, 40, 109, 79)}
FRAMES = 4


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same clip tracked twice: with tracks drawn, and with no instrument class (no tracks)."""
    root = tmp_path_factory.mktemp("track_overlay")
    write_clip(root / "clip.mp4", FRAMES, size=(96, 128))
    mask = np.zeros((96, 128), np.uint8)
    for cls, (x0, y0, x1, y1) in BOXES.items():
        mask[y0:y1 + 1, x0:x1 + 1] = cls
    Image.fromarray(mask).save(root / "mask.png")
    args = ["track", str(root / "clip.mp4"), "--mask", str(root / "mask.png")]
    assert main([*args, "--out", str(root / "tracked")]) == 0
    assert main([*args, "--out", str(root / "plain"), "--track-classes", "9"]) == 0  # class 9: no region
    return root / "tracked", root / "plain"


def _frame(folder: Path, index: int) -> np.ndarray:
    return np.asarray(Image.open(folder / "overlays" / f"frame_{index:06d}.png").convert("RGB")).astype(int)


def _rows(folder: Path) -> list[dict]:
    with open(folder / "tracks.csv") as handle:
        return [{k: (v if k in ("name", "state") else float(v)) for k, v in r.items()} for r in csv.DictReader(handle)]


def _box(row: dict) -> tuple[int, int, int, int]:
    x0, y0 = int(row["x"]), int(row["y"])
    return x0, y0, x0 + int(row["width"]) - 1, y0 + int(row["height"]) - 1


def _label_glyph(tracked: np.ndarray, plain: np.ndarray, box: tuple[int, int, int, int], colour) -> np.ndarray:
    """The id's text pixels on the label patch above the box's top-left corner, cropped to them."""
    x0, y0, x1, _ = box
    area = (slice(max(0, y0 - 24), y0), slice(x0, x1 + 1))
    changed = np.abs(tracked[area] - plain[area]).sum(-1) > 0
    in_colour = (tracked[area] == colour).all(-1)
    assert changed.any() and in_colour.sum() > 0.5 * changed.sum()  # a patch of the track's colour
    text = changed & (np.abs(tracked[area] - np.array(colour)).sum(-1) > 120)
    assert text.sum() >= 5, "no id text on the label patch"
    ys, xs = np.nonzero(text)
    return text[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def test_first_frame_boxes_and_centroids_are_drawn_in_the_track_colour(runs):
    tracked, plain = (_frame(f, 0) for f in runs)
    for track_id, (x0, y0, x1, y1) in BOXES.items():
        colour = track_colour(track_id)
        outline = np.concatenate([tracked[y0, x0:x1 + 1], tracked[y1, x0:x1 + 1],
                                  tracked[y0:y1 + 1, x0], tracked[y0:y1 + 1, x1]])
        assert (outline == colour).all()
        assert (plain[y0, x0:x1 + 1] != colour).any(-1).all()  # they were not that colour before
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2  # the centroid of a full rectangle
        assert (tracked[int(np.floor(cy)):int(np.ceil(cy)) + 1, int(np.floor(cx)):int(np.ceil(cx)) + 1]
                == colour).all()
    # Nothing else changed: every drawn pixel is on a box, its centroid dot or its label above the box.
    changed = np.abs(tracked - plain).sum(-1) > 0
    allowed = np.zeros_like(changed)
    for x0, y0, x1, y1 in BOXES.values():
        allowed[max(0, y0 - 24):y1 + 1, x0:x1 + 1] = True
    assert changed.any() and not (changed & ~allowed).any()


def test_each_id_keeps_its_colour_and_its_label_in_every_frame(runs):
    tracked_dir, plain_dir = runs
    rows = _rows(tracked_dir)
    assert {int(r["track_id"]) for r in rows} == {1, 2} and len(rows) == 2 * FRAMES
    assert track_colour(1) != track_colour(2)
    glyphs: dict[int, list[np.ndarray]] = {1: [], 2: []}
    for row in rows:
        tracked, plain = _frame(tracked_dir, int(row["frame"])), _frame(plain_dir, int(row["frame"]))
        track_id, box = int(row["track_id"]), _box(row)
        colour = track_colour(track_id)
        x0, y0, x1, y1 = box
        assert (tracked[y0:y1 + 1, x0] == colour).all() and (tracked[y1, x0:x1 + 1] == colour).all()
        glyphs[track_id].append(_label_glyph(tracked, plain, box, colour) > 0)
    # The same id is written identically in every frame; the two ids are written differently.
    for track_id, seen in glyphs.items():
        assert all(g.shape == seen[0].shape and (g == seen[0]).all() for g in seen), track_id
    assert glyphs[1][0].shape != glyphs[2][0].shape or (glyphs[1][0] != glyphs[2][0]).any()


def test_track_colours_are_distinct_and_vivid():
    colours = [track_colour(i) for i in range(1, 13)]
    assert len(set(colours)) == len(colours)
    assert all(max(c) - min(c) > 150 for c in colours)  # saturated, never grey on a grey scene
