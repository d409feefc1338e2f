"""Names from user input never put an output outside --out: manifest ids with '..' or absolute
paths, names that sanitise alike, symlinks that point outside, a video whose stem is '..'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgenet.exceptions import InputError
from surgenet.io.paths import inside, safe_name, unique_names


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_safe_names_are_one_harmless_component_and_stay_apart():
    assert safe_name("video01") == "video01"  # ordinary names unchanged (labels match them)
    for hostile in ("..", "../../etc/passwd", "/abs/evil", "...", "a/../../b", "\\\\server\\share"):
        name = safe_name(hostile)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name not in ("", ".", "..")
    assert len(safe_name("x" * 500)) <= 120 and safe_name("x" * 500) != safe_name("x" * 499)
    names = unique_names(["a b", "a_b", "../x", "x", "a_b"])
    assert names[1] == "a_b" == names[4] and names[3] == "x"  # the unchanged text keeps its name
    assert len({names[0], names[1], names[2], names[3]}) == 4


def test_inside_refuses_dot_dot_absolute_and_symlinks(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert inside(out, "a/b.png") == out / "a/b.png"
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    for bad in ("../x.png", str(tmp_path / "x.png"), "link/x.png"):
        with pytest.raises(InputError, match="outside the output folder"):
            inside(out, bad)


@pytest.fixture()
def hostile(tmp_path) -> tuple[Path, Path]:
    """A manifest whose ids climb out, are absolute and sanitise alike, and a frame folder that is
    a symlink to frames outside the archive."""
    pytest.importorskip("pyarrow", reason="archive jobs write Parquet: pip install 'surgenet[video]'")
    outside = tmp_path / "outside_frames"
    outside.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(outside / f"{i}.png")
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "linked").symlink_to(outside)
    manifest = archive / "list.csv"
    manifest.write_text("path,id\n"
                        f"linked,../../escaped\n"
                        f"{outside},{tmp_path / 'absolute'}\n"
                        "linked,a b\n"
                        "linked,a_b\n")
    return archive, manifest


def test_batch_writes_only_inside_out_with_sanitised_unique_names(hostile, tmp_path):
    from surgenet.batch import BatchJob, ModelSpec, discover_inputs, run_job

    archive, manifest = hostile
    ids = [item.id for item in discover_inputs(manifest)]
    assert len(set(ids)) == 4 and all("/" not in i and not i.startswith(".") for i in ids)
    assert "a_b" in ids and "escaped" in ids
    before = _files(tmp_path)
    out = tmp_path / "out"
    report = run_job(BatchJob(str(manifest), ModelSpec("surgenetxl-caformer", "cvs", pretrained=False), str(out)),
                     progress=False)
    assert sorted(report.done) == sorted(ids)
    written = _files(tmp_path) - before
    assert written and all(out in p.parents or p == out for p in written), sorted(written - {out})
    assert {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")} == set(ids)
    assert not (tmp_path / "absolute").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_planted_symlink_in_out_is_refused(hostile, tmp_path):
    from surgenet.batch import BatchJob, ModelSpec, run_job

    archive, _ = hostile
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("keep")
    (out / "linked").symlink_to(tmp_path / "victim")  # OUT/<id> already a link to elsewhere
    with pytest.raises(InputError, match="outside the output folder"):
        run_job(BatchJob(str(archive / "linked"), ModelSpec("surgenetxl-caformer", "cvs", pretrained=False), str(out)),
                progress=False)
    assert [p.name for p in (tmp_path / "victim").iterdir()] == ["keep.txt"]


def test_extract_frames_of_a_video_whose_stem_is_dot_dot_stays_inside(tmp_path):
    pytest.importorskip("av", reason="videos need PyAV")
    from surgenet.train.cli import main as train_main
    from tests.helpers.clips import write_clip

    videos = tmp_path / "videos"
    write_clip(videos / "...mp4", 3)  # Path("...mp4").stem == ".."
    before = _files(tmp_path)
    out = tmp_path / "deep" / "out"
    assert train_main(["extract-frames", str(videos), str(out), "--fps", "10"]) == 0
    written = _files(tmp_path) - before
    assert written and all(out in p.parents or p == out or p in out.parents for p in written), sorted(written)
    assert len(list(out.rglob("*.jpg"))) == 3
