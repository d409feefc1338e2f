"""Semi-supervised and keyframe modes on a sequence with known masks; instrument tracks."""

from __future__ import annotations


import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from surgenet.exceptions import InputError  # noqa: E402
from surgenet.evaluation.metrics import davis_scores  # noqa: E402
from surgenet.video.flow import DISFlowPropagator  # noqa: E402
from surgenet.video.frame_source import Frame  # noqa: E402
from surgenet.video.keyframes import KeyframePolicy, KeyframeSegmenter  # noqa: E402
from surgenet.video.propagate import one_hot  # noqa: E402
from surgenet.video.semi import propagate_mask  # noqa: E402
from surgenet.video.tracks import InstrumentTracker  # noqa: E402
from tests.helpers.paths import SHARED_DATA

DATA = SHARED_DATA


@pytest.fixture(scope="module")
def sequence():
    if not (DATA / "clips" / "clip_a.mp4").is_file() or not (DATA / "endoscapes" / "train").is_dir():
        pytest.skip(f"real data not found at {DATA} (clips and Endoscapes are needed to build the sequence)")
    from surgenet.video.synthetic import build_sequence

    return build_sequence(DATA, num_frames=10, size=(320, 180), seed=0)


def _frames(seq) -> list[Frame]:
    return [Frame(i, f"f{i}", image) for i, image in enumerate(seq.frames)]


def test_the_built_sequence_is_deterministic_and_its_masks_follow_the_paths(sequence):
    from surgenet.video.synthetic import build_sequence

    again = build_sequence(DATA, num_frames=10, size=(320, 180), seed=0)
    assert all((a == b).all() for a, b in zip(sequence.masks, again.masks))
    for k, path in enumerate(sequence.paths):
        visible = [t for t, m in enumerate(sequence.masks) if (m == k + 1).sum() > 200]
        moved = np.hypot(*np.subtract(path[visible[-1]][:2], path[visible[0]][:2]))
        assert moved > 10  # the objects really move
    assert set(np.unique(sequence.masks[0])) == {0, 1, 2}


def test_semi_supervised_flow_beats_the_unchanged_mask(sequence):
    outputs = list(propagate_mask(_frames(sequence), sequence.masks[0], DISFlowPropagator(scale=1.0)))
    assert [o.name for o in outputs] == [f"f{i}" for i in range(10)]
    assert (outputs[0].class_map == sequence.masks[0]).all()
    flow = davis_scores([o.class_map for o in outputs], sequence.masks)["JF_mean"]
    copy = davis_scores([sequence.masks[0]] * len(sequence.masks), sequence.masks)["JF_mean"]
    assert flow > copy + 0.15, (flow, copy)


def test_keyframe_mode_calls_the_segmenter_on_keyframes_only(sequence):
    calls = []

    def oracle(image: np.ndarray) -> np.ndarray:  # a perfect segmenter that counts its calls
        t = next(i for i, f in enumerate(sequence.frames) if f is image)
        calls.append(t)
        return one_hot(sequence.masks[t].astype(np.int64), 3)

    runner = KeyframeSegmenter(oracle, DISFlowPropagator(scale=1.0), KeyframePolicy(every=4, min_confidence=0.0))
    outputs = list(runner.run(_frames(sequence)))
    assert calls == [0, 4, 8]
    assert [o.keyframe for o in outputs] == [t in (0, 4, 8) for t in range(10)]
    assert runner.stats.model_calls == 3 and runner.stats.frames == 10
    assert runner.stats.saving == pytest.approx(0.7)
    # keyframes take the fresh (here perfect) labels where the propagation is unsure, so they
    # end up at least as good as propagation alone
    keyframed = davis_scores([o.class_map for o in outputs], sequence.masks)["JF_mean"]
    alone = davis_scores([o.class_map for o in propagate_mask(_frames(sequence), sequence.masks[0],
                                                              DISFlowPropagator(scale=1.0))], sequence.masks)
    assert keyframed > alone["JF_mean"]


def test_keyframe_on_a_confidence_drop_and_on_a_scene_cut():
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (0, 0), 3)
    other = np.full((64, 96, 3), 250, np.uint8)  # the camera leaves the body: a bright flat frame
    frames = [Frame(i, str(i), img) for i, img in enumerate([scene, scene, scene, other, other])]
    segment = lambda image: one_hot(np.zeros(image.shape[:2], np.int64), 2)  # noqa: E731
    runner = KeyframeSegmenter(segment, DISFlowPropagator(scale=1.0), KeyframePolicy(every=100, min_confidence=0.5))
    reasons = [o.reason for o in runner.run(frames)]
    assert reasons[:4] == ["first", "", "", "scene-cut"]
    strict = KeyframeSegmenter(segment, DISFlowPropagator(scale=1.0), KeyframePolicy(every=100, min_confidence=1.01))
    assert [o.reason for o in strict.run(frames[:3])] == ["first", "confidence", "confidence"]
    with pytest.raises(InputError, match="keyframe interval"):
        KeyframePolicy(every=0)


# ----------------------------------------------------------------------------- tracks
def _crossing(n: int = 22):
    """Two textured discs cross on close rows, one in front of the other, then part."""
    rng = np.random.default_rng(0)
    h, w, r = 96, 160, 11
    background = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.0)
    yy, xx = np.mgrid[:h, :w]
    frames, maps, centres = [], [], []
    for t in range(n):
        ax, bx = 20 + 5 * t, 140 - 5 * t
        a = (xx - ax) ** 2 + (yy - 42) ** 2 <= r * r
        b = (xx - bx) ** 2 + (yy - 54) ** 2 <= r * r
        image = background.copy()
        image[a] = np.roll(texture, 5 * t, axis=1)[a]
        image[b] = 255 - np.roll(texture, -5 * t, axis=1)[b]  # disc b in front
        frames.append(image)
        maps.append((a | b).astype(np.uint8))  # one instrument class: ids must come from tracking
        centres.append((ax, bx))
    return frames, maps, centres


@pytest.mark.parametrize("matching", ["hungarian", "greedy"])
def test_track_identities_persist_when_two_instruments_cross(matching):
    frames, maps, centres = _crossing()
    tracker = InstrumentTracker([1], min_area=20, matching=matching)
    propagator = DISFlowPropagator(scale=1.0)
    propagator.start(frames[0], one_hot(maps[0].astype(np.int64), 2))
    first = tracker.update(maps[0])
    left = next(r.track_id for r in first if r.cx < 80)  # the disc that starts on the left
    states = set()
    for t in range(1, len(frames)):
        step = propagator.step(frames[t])
        rows = tracker.update(maps[t], step.warp_labels, t)
        states |= {r.state for r in rows}
        if t in (5, len(frames) - 1):  # before and after the crossing: two separate discs
            by_id = {r.track_id: r.cx for r in rows}
            assert len(by_id) == 2
            assert by_id[left] == pytest.approx(centres[t][0], abs=2)  # still on the left disc's path
    assert "merged" in states  # they did touch
    assert tracker.track_count == 2


def test_tracks_refuse_bad_arguments():
    with pytest.raises(InputError, match="at least one"):
        InstrumentTracker([])
    with pytest.raises(InputError, match="unknown matching"):
        InstrumentTracker([1], matching="random")
    tracker = InstrumentTracker([1])
    tracker.update(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="differs in size"):
        tracker.update(np.zeros((8, 9), np.uint8))
