"""`surgenet batch` and `surgenet-train extract-frames` pick the same frames of one video."""

from __future__ import annotations

import pytest

pytest.importorskip("av", reason="reading videos needs PyAV: pip install 'surgenet[video]'")

from surgenet.batch.decode import decode_rows  # noqa: E402
from surgenet.batch.inputs import ArchiveInput  # noqa: E402
from surgenet.train.cli import main as train_main  # noqa: E402
from surgenet.transforms import create_transform  # noqa: E402
from tests.helpers.clips import write_clip  # noqa: E402


# An MPEG transport stream starts near 1.4 s, not at 0; Matroska rounds timestamps to milliseconds,
# so at 30 fps frame 1 is at 0.033 s, before the sample it serves (1/30 s).
@pytest.mark.parametrize("suffix, rate", [(".mp4", 10), (".ts", 10), (".mkv", 30)])
@pytest.mark.parametrize("fps", [0.7, 1, 3, 7.5, 30])
def test_batch_and_extract_frames_take_the_same_frames(tmp_path, fps, suffix, rate):
    videos = tmp_path / "videos"
    frames = 31
    write_clip(videos / f"clip{suffix}", frames, fps=rate)
    assert train_main(["extract-frames", str(videos), str(tmp_path / "out"), "--fps", str(fps)]) == 0
    extracted = sorted(int(p.stem) for p in (tmp_path / "out" / "clip").glob("*.jpg"))

    transform = create_transform({"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3})
    rows = list(decode_rows(ArchiveInput("clip", str(videos / f"clip{suffix}"), "video"), fps, transform))
    batch = [row["frame"] for row in rows if not row["marker"]]

    # Independent expectation: sample k is due at k / fps s; it is served by the first frame at or
    # after it (frame i is at i / rate s, give or take a rounded millisecond), and a frame serving
    # several samples is written once.
    last = (frames - 1) / rate
    due = [k / fps for k in range(int(last * fps) + 2)]
    expected = sorted({next(i for i in range(frames) if i / rate + 1e-3 >= t) for t in due if t <= last + 1e-3})
    assert batch == extracted == expected
