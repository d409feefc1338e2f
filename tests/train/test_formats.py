"""Dataset readers (surgenet.train.formats): each format from small files written here in its
documented layout, broken files named in the errors, auto-detection, and the real data in
../shared/data where it exists."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgenet.exceptions import InputError
from surgenet.train.formats import detect_format, list_formats, open_dataset
from tests.helpers.paths import SHARED_DATA

REAL = SHARED_DATA


def rgb(path: Path, value: int = 100, size=(6, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def ids(path: Path, array, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(array, np.uint8)
    Image.fromarray(np.repeat(a[..., None], 3, axis=2) if channels == 3 else a).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MASK_A = [[0, 1, 2, 3, 4, 5], [6, 255, 0, 0, 0, 0], [0] * 6, [5] * 6]
MASK_B = [[7, 7, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0] * 6, [0] * 6]  # 7: not one of the 7 classes


# -- Endoscapes --------------------------------------------------------------------------------------

def shared_endoscapes(root: Path) -> Path:
    rgb(root / "images" / "1_100.jpg")
    rgb(root / "images" / "2_200.jpg")
    ids(root / "masks" / "1_100.png", MASK_A)
    ids(root / "masks" / "2_200.png", MASK_B)
    write(root / "cvs.csv", "file,video,c1,c2,c3\n1_100.jpg,1,0.3333,0.0000,1.0000\n2_200.jpg,2,0.6667,1,0\n")
    return root


def test_endoscapes_shared_layout(tmp_path):
    root = shared_endoscapes(tmp_path / "train")
    assert detect_format(root) == "endoscapes"
    with pytest.warns(UserWarning) as caught:
        seg = open_dataset(root, "segmentation")
    assert len(caught) == 1 and "2_200.png" in str(caught[0].message) and "1_100.png" not in str(caught[0].message)
    assert seg.class_names == ["background", "cystic plate", "hepatocystic triangle", "cystic artery", "cystic duct",
                               "gallbladder", "tool"]
    assert [p.name for p in seg.paths] == ["1_100.jpg", "2_200.jpg"]
    image, mask = seg[0]
    assert image.mode == "RGB" and image.size == (6, 4)
    assert mask.dtype == np.int64 and mask.shape == (4, 6)
    np.testing.assert_array_equal(mask, MASK_A)
    expected_b = np.array(MASK_B)
    expected_b[expected_b == 7] = 255
    np.testing.assert_array_equal(seg[1][1], expected_b)
    # Labelled pixels per class, counted by hand from MASK_A and MASK_B (255 and 7 not counted).
    np.testing.assert_array_equal(seg.class_pixels, [(1 + 4 + 6) + (4 + 6 + 6), 1 + 6, 1, 1, 1, 1 + 6, 1])

    cvs = open_dataset(f"endoscapes:{root}", "cvs")
    assert cvs.task == "cvs" and len(cvs) == 2
    target = cvs[1][1]
    assert target.dtype == np.float32 and target.shape == (3,)
    np.testing.assert_allclose(cvs[0][1], [0.3333, 0, 1], atol=1e-6)
    np.testing.assert_allclose(target, [0.6667, 1, 0], atol=1e-6)
    assert len(open_dataset(root / "cvs.csv", "cvs")) == 2  # the CSV itself names the layout too


def test_endoscapes_shared_layout_errors(tmp_path):
    root = shared_endoscapes(tmp_path / "a")
    write(root / "cvs.csv", "file,video,c1,c2,c3\n1_100.jpg,1,0,0,1\n2_200.jpg,2,0.5,1\n")
    with pytest.raises(InputError, match=r"cvs\.csv line 3: 4 columns, expected 5"):
        open_dataset(root, "cvs")
    write(root / "cvs.csv", "file,video,c1,c2,c3\n1_100.jpg,1,0,0,1\n9_900.jpg,9,0,0,0\n")
    with pytest.raises(InputError, match=r"cvs\.csv line 3: image .*9_900\.jpg does not exist"):
        open_dataset(root, "cvs")
    write(root / "cvs.csv", "file,video,c1,c2,c3\n1_100.jpg,1,0,2,1\n")
    with pytest.raises(InputError, match=r"cvs\.csv line 2, column c2: '2' is not a number in \[0, 1\]"):
        open_dataset(root, "cvs")
    rgb(root / "images" / "1_100.jpg", size=(8, 4))  # the mask is 6x4
    with pytest.raises(InputError, match=r"mask .*1_100\.png is 6x4 but its image .*1_100\.jpg is 8x4"):
        open_dataset(root, "segmentation")
    rgb(root / "images" / "3_300.jpg")
    with pytest.raises(InputError, match=r"3_300\.jpg has no mask .*3_300\.png"):
        open_dataset(root, "segmentation")
    with pytest.raises(InputError, match="no labels for the phase task"):
        open_dataset(root, "phase")


def release_endoscapes(root: Path) -> Path:
    """The release layout: train_seg/ (segmentation), train/ (CVS keyframes), semseg/, all_metadata.csv."""
    coco = {"images": [{"id": 1, "file_name": "1_100.jpg"}, {"id": 2, "file_name": "2_200.jpg"}],
            "annotations": [], "categories": []}
    write(root / "train_seg" / "annotation_coco.json", json.dumps(coco))
    rgb(root / "train_seg" / "1_100.jpg")
    rgb(root / "train_seg" / "2_200.jpg")
    ids(root / "semseg" / "1_100.png", MASK_A, channels=3)
    ids(root / "semseg" / "2_200.png", MASK_B, channels=3)
    write(root / "train" / "annotation_coco.json", json.dumps(coco))
    for name in ("1_100", "1_105", "2_200"):
        rgb(root / "train" / f"{name}.jpg")
    write(root / "train_vids.txt", "1\n2\n")
    header = "vid,frame,avg_cvs,C1,C2,C3,is_ds_keyframe,cvs_annotator_1,cvs_annotator_2,cvs_annotator_3"
    write(root / "all_metadata.csv", "\n".join([
        header,
        '1,100,"[0.67, 0.33, 0.0]",0.6667,0.3333,0.0,True,"[1, 0, 0]","[1, 1, 0]","[0, 0, 0]"',
        '1,105,"[0.67, 0.33, 0.0]",0.6667,0.3333,0.0,False,,,',  # propagated label, not a keyframe
        '2,200,"[1.0, 1.0, 0.33]",1.0,1.0,0.3333,True,"[1, 1, 0]","[1, 1, 1]","[1, 1, 0]"',
        '3,50,"[0.0, 0.0, 0.0]",0.0,0.0,0.0,True,"[0, 0, 0]","[0, 0, 0]","[0, 0, 0]"',  # a val video
    ]) + "\n")
    return root


def test_endoscapes_release_layout(tmp_path):
    root = release_endoscapes(tmp_path / "endoscapes")
    assert detect_format(root / "train_seg") == "endoscapes"
    with pytest.warns(UserWarning, match="2_200.png"):
        seg = open_dataset(root / "train_seg", "segmentation")
    assert len(seg) == 2 and seg.masks[0] == root / "semseg" / "1_100.png"
    np.testing.assert_array_equal(seg[0][1], MASK_A)
    assert seg[1][1][0, 0] == 255
    cvs = open_dataset(root / "train", "cvs")
    assert [p.name for p in cvs.paths] == ["1_100.jpg", "2_200.jpg"]  # keyframes of the split's videos
    with pytest.raises(InputError, match=r"release root; pass one split folder, e.g. .*train_seg"):
        open_dataset(root, "segmentation")
    # Mean of the three annotators' votes, by hand.
    np.testing.assert_allclose(cvs.labels, [[2 / 3, 1 / 3, 0], [1, 1, 1 / 3]], atol=1e-6)


def test_endoscapes_release_layout_errors(tmp_path):
    root = release_endoscapes(tmp_path / "endoscapes")
    table = root / "all_metadata.csv"
    text = table.read_text()
    table.write_text(text.replace('"[1, 1, 0]","[1, 1, 1]"', '"[1, 1, 0]","[1, 2, 1]"'))
    with pytest.raises(InputError, match=r"all_metadata\.csv line 4, column cvs_annotator_2: .* three 0/1 votes"):
        open_dataset(root / "train", "cvs")
    table.write_text(text.replace("2,200,\"[1.0, 1.0, 0.33]\",1.0,1.0", "2,200,\"[1.0, 1.0, 0.33]\",0.0,1.0"))
    with pytest.raises(InputError, match=r"all_metadata\.csv line 4: C1 = 0\.0 but the annotators' votes average 1"):
        open_dataset(root / "train", "cvs")
    table.write_text(text)
    (root / "train" / "2_200.jpg").unlink()
    with pytest.raises(InputError, match=r"all_metadata\.csv line 4 .*2_200\.jpg does not exist"):
        open_dataset(root / "train", "cvs")
    (root / "train_seg" / "annotation_coco.json").write_text('{"images": [\n  {"file_name": "1_100.jpg"},\n]}')
    with pytest.raises(InputError, match=r"annotation_coco\.json is not valid JSON: .* line 3"):
        open_dataset(root / "train_seg", "segmentation")
    (root / "semseg" / "2_200.png").unlink()
    write(root / "train_seg" / "annotation_coco.json", json.dumps({"images": [{"file_name": "2_200.jpg"}]}))
    with pytest.raises(InputError, match=r"annotation_coco\.json images\[0\]: 2_200\.jpg has no mask"):
        open_dataset(root / "train_seg", "segmentation")
    Image.fromarray(np.dstack([np.zeros((4, 6), np.uint8), np.ones((4, 6), np.uint8),
                               np.zeros((4, 6), np.uint8)])).save(root / "semseg" / "2_200.png")
    with pytest.raises(InputError, match=r"2_200\.png .* is not a class-index mask"):
        open_dataset(root / "train_seg", "segmentation")


# -- CholecT50 ---------------------------------------------------------------------------------------

T50_CATEGORIES = {
    "instrument": {str(i): n for i, n in enumerate(["grasper", "bipolar", "hook", "scissors", "clipper", "irrigator"])},
    "verb": {"0": "grasp", "1": "retract", "2": "null_verb"},
    "target": {"0": "gallbladder", "1": "null_target"},
    "phase": {str(i): n for i, n in enumerate(["preparation", "carlot-triangle-dissection", "clipping-and-cutting",
                                                "gallbladder-dissection", "gallbladder-packaging",
                                                "cleaning-and-coagulation", "gallbladder-extraction"])},
    "triplet": {"0": "grasper,grasp,gallbladder", "1": "grasper,retract,gallbladder", "2": "hook,null_verb,null_target"},
}


def t50_row(triplet, tool, phase, present=1.0):
    return [triplet, tool, present, 0.1, 0.2, 0.3, 0.4, 0, 0, 1.0, -1.0, -1.0, -1.0, -1.0, phase]


def cholect50(root: Path, annotations: dict | None = None) -> Path:
    annotations = annotations if annotations is not None else {
        "0": [t50_row(0, 0, 1), t50_row(2, 2, 1)],  # grasper + hook, phase 1
        "1": [[-1] * 14 + [3]],  # no instrument, phase 3
        "2": [],  # no instrument, no phase
        "3": [t50_row(1, 0, 3), t50_row(-1, 4, 3, present=0.0)],  # grasper; a clipper row that is absent
    }
    write(root / "labels" / "VID01.json", json.dumps({"categories": T50_CATEGORIES, "video": 1, "fps": 1,
                                                      "annotations": annotations}))
    for frame in (0, 1, 2, 3, 4):  # 4 has no annotation: left out
        rgb(root / "videos" / "VID01" / f"{frame:06d}.jpg", value=10 * frame)
    return root


def test_cholect50(tmp_path):
    root = cholect50(tmp_path / "t50")
    assert detect_format(root) == "cholect50"
    phase = open_dataset(root, "phase")
    assert phase.class_names[1] == "carlot-triangle-dissection"
    assert [p.name for p in phase.paths] == ["000000.jpg", "000001.jpg", "000003.jpg"]
    assert [phase[i][1] for i in range(3)] == [1, 3, 3]
    assert [(v.name, [f.name for f in v.frames], v.phases.tolist()) for v in phase.videos] == \
        [("VID01", ["000000.jpg", "000001.jpg", "000003.jpg"], [1, 3, 3])]
    tools = open_dataset(f"cholect50:{root}", "tools")
    assert tools.class_names == ["grasper", "bipolar", "hook", "scissors", "clipper", "irrigator"]
    assert [p.name for p in tools.paths] == ["000000.jpg", "000001.jpg", "000002.jpg", "000003.jpg"]
    np.testing.assert_array_equal(tools.labels, [[1, 0, 1, 0, 0, 0], [0] * 6, [0] * 6, [1, 0, 0, 0, 0, 0]])
    target = tools[0][1]
    assert target.dtype == np.float32 and target.shape == (6,)
    np.testing.assert_array_equal(tools.triplets, [[1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0]])
    assert tools.triplet_names[2] == "hook,null_verb,null_target"
    assert np.asarray(tools[3][0]).mean() == pytest.approx(30, abs=2)  # frame 3's image


@pytest.mark.parametrize("annotations, message", [
    ({"0": [t50_row(0, 0, 1)[:14]]}, r"VID01\.json, annotations\['0'\] row 0: 14 values, expected 15"),
    ({"0": [t50_row(0, 9, 1)]}, r"annotations\['0'\] row 0: instrument id 9 is not in categories\.instrument"),
    ({"0": [t50_row(0, 0, 1), t50_row(0, 0, 2)]}, r"annotations\['0'\]: rows give different phases \[1, 2\]"),
    ({"0": [t50_row(0, 0, "one")]}, r"annotations\['0'\] row 0, value 14: 'one' is not a number"),
    ({"7": [t50_row(0, 0, 1)]}, r"annotations\['7'\]: frame image .*VID01/000007\.jpg does not exist"),
])
def test_cholect50_errors(tmp_path, annotations, message):
    root = cholect50(tmp_path / "t50", annotations)
    with pytest.raises(InputError, match=message):
        open_dataset(root, "tools")


def test_video_selection(tmp_path):
    root = cholect50(tmp_path / "t50")
    write(root / "labels" / "VID02.json", json.dumps({"categories": T50_CATEGORIES, "annotations": {
        "5": [t50_row(0, 0, 6)]}}))
    rgb(root / "videos" / "VID02" / "000005.jpg")
    assert [v.name for v in open_dataset(root, "phase").videos] == ["VID01", "VID02"]
    only = open_dataset(f"cholect50:{root}#VID02", "phase")
    assert [p.name for p in only.paths] == ["000005.jpg"] and only.labels.tolist() == [6]
    assert len(open_dataset(root, "tools", videos=["VID02", "VID01"])) == 5
    with pytest.raises(InputError, match=r"has no video VID09; its videos: VID01, VID02"):
        open_dataset(f"{root}#VID01,VID09", "tools")
    with pytest.raises(InputError, match="the endoscapes format has no videos to select"):
        open_dataset(f"{shared_endoscapes(tmp_path / 'endo')}#1", "cvs")


def test_cholect50_bad_json(tmp_path):
    root = cholect50(tmp_path / "t50")
    write(root / "labels" / "VID01.json", '{"categories": {},\n"annotations": {"0": [1, 2,]}}')
    with pytest.raises(InputError, match=r"VID01\.json is not valid JSON: .* line 2"):
        open_dataset(f"cholect50:{root}", "phase")


# -- Cholec80 and extract-frames ---------------------------------------------------------------------

def write_video(path: Path, frames: int, fps: int = 25) -> Path:
    """Frame i is a flat grey of level 4 * i: a decoded frame tells its index."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((16, 32, 3), 4 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cholec80(root: Path, capsys) -> Path:
    from surgenet.train.cli import main

    write_video(root / "videos" / "video01.mp4", frames=60)  # 2.4 s at 25 fps
    assert main(["extract-frames", str(root / "videos"), str(root / "frames"), "--fps", "1"]) == 0
    assert "3 frames from 1 videos" in capsys.readouterr().out
    phases = ["Preparation"] * 20 + ["CalotTriangleDissection"] * 20 + ["ClippingCutting"] * 20
    write(root / "phase_annotations" / "video01-phase.txt",
          "Frame\tPhase\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(phases)))
    write(root / "tool_annotations" / "video01-tool.txt",
          "Frame\tGrasper\tBipolar\tHook\tScissors\tClipper\tIrrigator\tSpecimenBag\n"
          "0\t1\t0\t0\t0\t0\t0\t0\n25\t1\t0\t1\t0\t0\t0\t0\n50\t0\t0\t0\t0\t1\t0\t1\n")
    return root


def test_extract_frames_named_by_frame_index_and_resumed(tmp_path, capsys):
    from surgenet.train.cli import main

    root = cholec80(tmp_path / "c80", capsys)
    files = sorted((root / "frames" / "video01").iterdir())
    assert [f.name for f in files] == ["000000.jpg", "000025.jpg", "000050.jpg"]
    np.testing.assert_allclose([np.asarray(Image.open(f)).mean() for f in files], [0, 100, 200], atol=4)
    files[1].unlink()
    stamp = files[0].stat().st_mtime_ns
    assert main(["extract-frames", str(root / "videos"), str(root / "frames"), "--fps", "1"]) == 0
    assert "(2 already there)" in capsys.readouterr().out
    assert files[1].is_file() and files[0].stat().st_mtime_ns == stamp  # only the missing frame is written
    assert not list((root / "frames" / "video01").glob(".*.tmp"))
    assert main(["extract-frames", str(root / "videos"), str(root / "other"), "--quality", "0"]) == 2
    assert "--quality must be a JPEG quality in 1..100" in capsys.readouterr().err
    assert not (root / "other").exists()


def test_cholec80(tmp_path, capsys):
    root = cholec80(tmp_path / "c80", capsys)
    assert detect_format(root) == "cholec80"
    phase = open_dataset(root, "phase")
    assert [p.name for p in phase.paths] == ["000000.jpg", "000025.jpg", "000050.jpg"]
    assert [phase[i][1] for i in range(3)] == [0, 1, 2]  # frames 0, 25, 50 of the 20/20/20 timeline
    assert phase.videos[0].name == "video01" and phase.videos[0].phases.tolist() == [0, 1, 2]
    tools = open_dataset(f"cholec80:{root}", "tools")
    assert tools.class_names == ["Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag"]
    np.testing.assert_array_equal(tools.labels, [[1, 0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 1]])
    assert tools.videos[0].phases.tolist() == [0, 1, 2]


def test_cholec80_errors(tmp_path, capsys):
    root = cholec80(tmp_path / "c80", capsys)
    tool_file = root / "tool_annotations" / "video01-tool.txt"
    tool_file.write_text(tool_file.read_text().replace("25\t1\t0\t1\t0\t0\t0\t0", "25\t1\t0\t1\t0\t0\t0"))
    with pytest.raises(InputError, match=r"video01-tool\.txt line 3: 7 columns, expected 8"):
        open_dataset(root, "tools")
    phase_file = root / "phase_annotations" / "video01-phase.txt"
    phase_file.write_text(phase_file.read_text().replace("3\tPreparation", "3\tSuturing"))
    with pytest.raises(InputError, match=r"video01-phase\.txt line 5: phase 'Suturing' is not one of"):
        open_dataset(root, "phase")
    tool_file.write_text(tool_file.read_text().replace("25\t1\t0\t1\t0\t0\t0\n", "25\t1\t0\t1\t0\t0\t0\t0\n"))
    rgb(root / "frames" / "video01" / "video01_000001.jpg")
    with pytest.raises(InputError, match=r"video01_000001\.jpg is not named by frame index"):
        open_dataset(root, "tools")


# -- CholecSeg8k -------------------------------------------------------------------------------------

def test_cholecseg8k_colours(tmp_path):
    # The published colour table (grey levels of the watershed masks) -> class id.
    table = {0x50: 0, 0x11: 1, 0x21: 2, 0x13: 3, 0x12: 4, 0x31: 5, 0x23: 6, 0x24: 7, 0x25: 8, 0x32: 9, 0x22: 10,
             0x33: 11, 0x05: 12}
    greys = list(table) + [0xFF, 0x00, 0x80]  # white outline, black unlabelled, a colour not in the table
    mask = np.full((5, 4, 3), 0x50, np.uint8)
    for k, g in enumerate(greys):
        mask[k // 4, k % 4] = g
    mask[4, 0] = (0x50, 0x11, 0x50)  # channels differ
    clip = tmp_path / "seg8k" / "video01" / "video01_00080"
    clip.mkdir(parents=True)
    Image.fromarray(mask).save(clip / "frame_80_endo_watershed_mask.png")
    rgb(clip / "frame_80_endo.png", size=(4, 5))
    Image.fromarray(np.full((4, 4, 3), 0x50, np.uint8)).save(clip / "frame_81_endo_watershed_mask.png")
    rgb(clip / "frame_81_endo.png", size=(4, 4))
    assert detect_format(tmp_path / "seg8k") == "cholecseg8k"
    with pytest.warns(UserWarning) as caught:
        ds = open_dataset(tmp_path / "seg8k", "segmentation")
    assert len(caught) == 1 and "frame_80_endo_watershed_mask.png" in str(caught[0].message)
    assert "frame_81" not in str(caught[0].message)
    assert len(ds.class_names) == 13 and ds.class_names[9] == "L-hook electrocautery"
    expected = np.array(list(table.values()) + [255, 255, 255] + [255, 0, 0, 0])
    np.testing.assert_array_equal(ds[0][1].ravel(), expected)
    assert (ds[1][1] == 0).all()


# -- plain CSV and folder ----------------------------------------------------------------------------

def test_plain_csv(tmp_path):
    for v, n in (("video01", 3), ("video02", 2)):
        for i in range(1, n + 1):
            rgb(tmp_path / "frames" / v / f"{i}.jpg")
    lines = ["frames/video01/1.jpg,0", "frames/video01/2.jpg,0", "frames/video01/3.jpg,2",
             "frames/video02/1.jpg,1", f"{tmp_path / 'frames/video02/2.jpg'},1"]
    table = write(tmp_path / "list.csv", "\n".join(lines) + "\n")
    assert detect_format(table) == "csv"
    ds = open_dataset(table, "phase")
    assert [ds[i][1] for i in range(5)] == [0, 0, 2, 1, 1] and ds.class_names == ["0", "1", "2"]
    assert [(v.name, v.phases.tolist()) for v in ds.videos] == [("video01", [0, 0, 2]), ("video02", [1, 1])]
    write(tmp_path / "header.csv", "path,label\n" + "\n".join(lines[:2]) + "\n")
    assert len(open_dataset("csv:" + str(tmp_path / "header.csv"), "phase")) == 2
    write(tmp_path / "bad.csv", "frames/video01/1.jpg,0\nframes/video01/2.jpg,0,extra\n")
    with pytest.raises(InputError, match=r"bad\.csv line 2: 3 columns, expected 2"):
        open_dataset(f"csv:{tmp_path / 'bad.csv'}", "phase")
    write(tmp_path / "bad.csv", "frames/video01/1.jpg,0\nframes/video09/1.jpg,0\n")
    with pytest.raises(InputError, match=r"bad\.csv line 2: image .*video09/1\.jpg does not exist"):
        open_dataset(f"csv:{tmp_path / 'bad.csv'}", "phase")
    with pytest.raises(InputError, match="no labels for the segmentation task"):
        open_dataset(table, "segmentation")


def test_folder_layouts(tmp_path):
    root = tmp_path / "seg"
    rgb(root / "images" / "a.png")
    ids(root / "masks" / "a.png", MASK_B)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no class list: every id below 255 is a class
        seg = open_dataset(root, "segmentation")
    assert seg.class_names == [f"class_{i}" for i in range(8)] and seg[0][1][0, 0] == 7
    np.testing.assert_array_equal(seg.class_pixels, [16, 6, 0, 0, 0, 0, 0, 2])  # counted in MASK_B
    write(root / "classes.txt", "background\ntissue\n")
    with pytest.warns(UserWarning, match=r"a\.png \(7\)"):
        seg = open_dataset(f"folder:{root}", "segmentation")
    assert seg.class_names == ["background", "tissue"] and seg[0][1][0, 0] == 255 and seg[0][1][1, 0] == 1

    rgb(tmp_path / "lab" / "x.jpg")
    write(tmp_path / "lab" / "cvs.csv", "image,c1,c2,c3\nx.jpg,1,0,0.5\n")
    cvs = open_dataset(tmp_path / "lab" / "cvs.csv", "cvs")
    np.testing.assert_allclose(cvs[0][1], [1, 0, 0.5])
    write(tmp_path / "phase" / "v1.csv", "frame,phase\n../lab/x.jpg,2\n../lab/x.jpg,Clipping\n")
    phase = open_dataset(tmp_path / "phase", "phase", class_names=["Prep", "Calot", "Clipping"])
    assert phase.labels.tolist() == [2, 2] and phase.videos[0].name == "v1"
    write(tmp_path / "phase" / "v1.csv", "frame,phase\n../lab/x.jpg,Suturing\n")
    with pytest.raises(InputError, match=r"v1\.csv line 2: phase 'Suturing' is neither an index nor one of"):
        open_dataset(tmp_path / "phase", "phase", class_names=["Prep"])


# -- detection and specs -----------------------------------------------------------------------------

def test_detection_errors(tmp_path):
    both = cholect50(tmp_path / "both")
    Image.fromarray(np.full((4, 4, 3), 0x50, np.uint8)).save(both / "videos" / "frame_1_endo_watershed_mask.png")
    with pytest.raises(InputError, match=r"several dataset formats \(cholect50, cholecseg8k\).*FORMAT:PATH"):
        open_dataset(both, "tools")
    assert len(open_dataset(f"cholect50:{both}", "tools")) == 4  # naming the format settles it
    write(tmp_path / "odd" / "notes.txt", "nothing here")
    with pytest.raises(InputError, match="cannot tell the dataset format .* FORMAT:PATH"):
        open_dataset(tmp_path / "odd", "segmentation")
    with pytest.raises(InputError, match="unknown dataset format 'coco'"):
        open_dataset(f"coco:{tmp_path / 'odd'}", "segmentation")
    with pytest.raises(InputError, match="unknown task 'depth'"):
        open_dataset(tmp_path / "odd", "depth")
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(f"endoscapes:{tmp_path / 'missing'}", "cvs")
    assert set(list_formats()) == {"endoscapes", "cholect50", "cholec80", "cholecseg8k", "csv", "folder"}


def test_formats_command(capsys):
    from surgenet.train.cli import main

    assert main(["formats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:6]] == ["endoscapes", "cholect50", "cholec80", "cholecseg8k", "csv",
                                                       "folder"]


# -- the real data in ../shared/data -----------------------------------------------------------------

def real(sub: str) -> Path:
    path = REAL / sub
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data, see its README)")
    return path


def test_real_endoscapes():
    root = real("endoscapes")
    train = open_dataset(root / "train", "segmentation")
    with pytest.warns(UserWarning, match=r"153_32700\.png \(7\)"):
        val = open_dataset(root / "val", "segmentation")
    assert (len(train), len(val)) == (343, 76)
    assert set(train.unknown_ids) == set() and [p.name for p in val.unknown_ids] == ["153_32700.png"]
    i = [p.name for p in val.paths].index("153_32700.jpg")
    image, mask = val[i]
    raw = np.asarray(Image.open(root / "val" / "masks" / "153_32700.png"))
    assert image.size == (854, 480) and mask.shape == (480, 854)
    assert (raw == 7).any() and (mask[raw == 7] == 255).all() and set(np.unique(mask)) <= {0, 1, 2, 3, 4, 5, 6, 255}
    np.testing.assert_array_equal(mask[raw != 7], raw[raw != 7])
    assert train.class_pixels.sum() == train.value_counts[:7].sum() and train.class_pixels.min() > 0
    with open(root / "val" / "cvs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cvs = open_dataset(root / "val", "cvs")
    assert len(cvs) == len(rows) == 76
    np.testing.assert_allclose(cvs.labels, [[float(r[c]) for c in ("c1", "c2", "c3")] for r in rows])
    assert [p.name for p in cvs.paths] == [r["file"] for r in rows]


def test_real_cholect50_counts():
    root = real("cholect50")
    phase, tools = open_dataset(root, "phase"), open_dataset(root, "tools")
    # An independent count straight from the JSON files.
    frames, phase_counts, tool_frames = 0, np.zeros(7, int), np.zeros(6, int)
    for f in sorted((root / "labels").glob("*.json")):
        annotations = json.loads(f.read_text())["annotations"]
        frames += len(annotations)
        for rows in annotations.values():
            phase_counts[rows[0][14]] += 1
            for tool in {r[1] for r in rows if r[1] >= 0 and r[2] == 1}:
                tool_frames[tool] += 1
    assert len(tools) == len(phase) == frames
    np.testing.assert_array_equal(np.bincount(phase.labels, minlength=7), phase_counts)
    np.testing.assert_array_equal(tools.labels.sum(0), tool_frames)
    assert [v.name for v in phase.videos] == ["VID68", "VID70", "VID73"]
    train, val = open_dataset(f"{root}#VID68,VID70", "phase"), open_dataset(f"cholect50:{root}#VID73", "phase")
    assert (len(train), len(val)) == (len(phase.videos[0].frames) + len(phase.videos[1].frames),
                                      len(phase.videos[2].frames))
    assert all(np.all(np.diff([int(p.stem) for p in v.frames]) > 0) for v in phase.videos)
