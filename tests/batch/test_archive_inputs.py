"""Hostile archives: mixed kinds of input (one declared table schema), videos that end before the
frames their container announces (partial, never passed off as complete), with both engines of
`surgenet batch` and every command that reads a video."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="archive jobs decode videos with PyAV: pip install 'surgenet[video]'")
pa = pytest.importorskip("pyarrow", reason="archive jobs write Parquet: pip install 'surgenet[video]'")
import pyarrow.parquet as pq  # noqa: E402

from surgenet.batch import BatchJob, ModelSpec, run_job  # noqa: E402
from surgenet.io import PartialVideoError, iter_video  # noqa: E402
from tests.helpers.cli import exit_code  # noqa: E402
from tests.helpers.clips import write_clip, write_truncated_clip  # noqa: E402

ZOO = "surgenetxl-caformer"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A video (4 frames at 10 fps), a folder of 2 frames and 3 loose images at the root."""
    root = tmp_path_factory.mktemp("mixed")
    write_clip(root / "clip.mp4", 4)
    rng = np.random.default_rng(0)
    (root / "frames").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / "frames" / f"{i}.png")
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(root / f"loose_{i}.jpg")
    return root


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> dict[str, Path]:
    """10-frame clips cut in the middle: Matroska (its header keeps the duration) and an MP4 whose
    index (written first) still lists every frame."""
    root = tmp_path_factory.mktemp("cut")
    clips = {"mkv": root / "cut.mkv", "mp4": root / "cut.mp4"}
    for path in clips.values():
        write_truncated_clip(path, 10)
    return clips


def _expected_types(mode: str) -> dict[str, object]:
    types = {"video": pa.string(), "source": pa.string(), "frame": pa.int64(), "name": pa.string(), "time": pa.float64()}
    if mode == "embed":
        types["embedding"] = pa.list_(pa.float16())
    else:
        types["prediction"] = pa.string()
        types["probabilities"] = pa.list_(pa.float32())
    return types


def _check_table(path: Path, mode: str, fps: float | None) -> None:
    table = pq.read_table(path)
    got = {f.name: f.type for f in table.schema}
    for name, kind in _expected_types(mode).items():  # list element names may differ: compare value types
        assert got[name] == kind or (pa.types.is_list(kind) and got[name].value_type == kind.value_type), (name, got)
    rows = table.to_pylist()
    by_input: dict[str, list[dict]] = {}
    for row in rows:
        by_input.setdefault(row["video"], []).append(row)
    # root images are one input (the archive's own folder), the sub-folder another, the clip the third
    video_rows = 4 if fps is None else 1  # 0.4 s at 2 fps: the sample at 0 s only
    assert sorted(len(v) for v in by_input.values()) == sorted([video_rows, 2, 3])
    clip = next(v for k, v in by_input.items() if k == "clip")
    assert all(isinstance(r["time"], float) for r in clip)
    folder = by_input["frames"]
    if fps is None:
        assert [r["time"] for r in folder] == [None, None]  # no clock: null, in a float64 column
    else:
        assert [r["time"] for r in folder] == [0.0, 0.5]


@pytest.mark.parametrize("fps, modes", [(None, ("embed", "cvs")), (2.0, ("embed",))])
def test_a_mixed_archive_gives_one_schema_with_and_without_fps(mixed, tmp_path, fps, modes):
    for mode in modes:
        spec = ModelSpec(ZOO, mode, pretrained=False)
        out = tmp_path / mode
        report = run_job(BatchJob(str(mixed), spec, str(out), fps=fps, dtype="float16"), progress=False)
        assert not report.failed and not report.partial and len(report.done) == 3
        _check_table(report.table, mode, fps)


@pytest.mark.slow
def test_a_mixed_archive_on_ray_without_fps(mixed, tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'surgenet[ray]'")
    report = run_job(BatchJob(str(mixed), ModelSpec(ZOO, "embed", pretrained=False), str(tmp_path / "ray"),
                              dtype="float16"), engine="ray", workers=1, progress=False)
    assert len(report.done) == 3 and not report.failed
    _check_table(report.table, "embed", None)


def test_iter_video_says_how_many_frames_a_truncated_video_announces_and_holds(truncated):
    for path in truncated.values():
        seen: list[PartialVideoError] = []
        frames = list(iter_video(path, on_partial=seen.append))
        assert 0 < len(frames) < 10 and len(seen) == 1
        assert seen[0].expected == 10 and seen[0].read == len(frames)
        assert f"{len(frames)} of the 10 frames" in str(seen[0])
        with pytest.raises(PartialVideoError):  # without a handler: never passed off as complete
            list(iter_video(path))


def test_batch_keeps_a_partial_video_and_lists_it(mixed, truncated, tmp_path, caplog):
    root = tmp_path / "archive"
    root.mkdir()
    (root / "whole.mp4").symlink_to(mixed / "clip.mp4")
    (root / "cut.mkv").write_bytes(truncated["mkv"].read_bytes())
    (root / "broken.mp4").write_bytes(b"not a video" * 50)
    out = tmp_path / "out"
    argv = ["embed", str(root), "--model", ZOO, "--no-pretrained", "--out", str(out)]
    assert exit_code(argv) == 1  # results are there, but not complete
    failures = {r["video"]: r for r in _read_csv(out / "failures.csv")}
    assert failures["cut"]["status"] == "partial" and failures["broken"]["status"] == "failed"
    read = int(failures["cut"]["read_frames"])
    assert failures["cut"]["expected_frames"] == "10" and 0 < read < 10
    table = pq.read_table(out / "embeddings.parquet").to_pylist()
    assert sum(r["video"] == "cut" for r in table) == read and sum(r["video"] == "whole" for r in table) == 4
    assert "ended after" in caplog.text
    assert exit_code(argv) == 1  # resumed: done, but still listed as partial
    assert {r["video"]: r["status"] for r in _read_csv(out / "failures.csv")} == {"cut": "partial",
                                                                                    "broken": "failed"}
    assert json.loads((out / "done.json").read_text())["cut"]["partial"]["read_frames"] == read


def test_a_run_where_no_input_can_be_read_exits_2(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mp4").write_bytes(b"garbage" * 40)
    (tmp_path / "in" / "b.mkv").write_bytes(b"garbage" * 40)
    assert exit_code(["embed", str(tmp_path / "in"), "--model", ZOO, "--no-pretrained",
                      "--out", str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("archive:")]
    assert len(err) == 1 and "no input" in err[0] and "Traceback" not in err[0], err  # (the progress bar aside)


def test_predict_track_and_extract_frames_warn_and_exit_1_on_a_truncated_video(truncated, tmp_path, capsys):
    import torch

    import surgenet

    torch.manual_seed(0)
    model = tmp_path / "cvs"
    surgenet.load_model(ZOO, task="cvs", pretrained=False).save_pretrained(model)
    video = truncated["mkv"]
    read = len(list(iter_video(video, on_partial=lambda e: None)))
    assert exit_code(["predict", str(video), "--model", str(model), "--out", str(tmp_path / "p"),
                      "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"ended after {read} of the 10 frames" in err and "Traceback" not in err
    assert len(_read_csv(tmp_path / "p" / "predictions.csv")) == read  # the frames read are kept
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.ones((8, 8), np.uint8) * 255, ((20, 20), (28, 28)))).save(mask)
    assert exit_code(["track", str(video), "--mask", str(mask), "--out", str(tmp_path / "t"), "--no-overlay"]) == 1
    assert f"ended after {read} of the 10 frames" in capsys.readouterr().err
    assert len(list((tmp_path / "t" / "masks").glob("*.png"))) == read
    from surgenet.train.cli import main as train_main

    assert train_main(["extract-frames", str(video), str(tmp_path / "x"), "--fps", "10"]) == 1
    assert "ended after" in capsys.readouterr().err
    assert 0 < len(list((tmp_path / "x" / "cut").glob("*.jpg"))) < 10


def test_training_samples_only_what_a_truncated_video_holds(truncated, caplog):
    from surgenet.train.data.video import video_duration

    with caplog.at_level("WARNING"):
        held = video_duration(truncated["mp4"])  # its index announces 1 s
    assert held < 0.8 and "announces 1.00 s" in caplog.text
