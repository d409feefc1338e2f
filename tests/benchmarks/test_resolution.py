"""benchmarks/resolution.py on a tiny model and three written frames: every size x backend row, an
mIoU equal to one computed here with numpy, and user mistakes in one line with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.scripts import load_script

pytest.importorskip("onnxruntime")
resolution = load_script("benchmarks/resolution.py")

NUM_CLASSES = 3
FRAME = (60, 100)  # H, W: neither benchmarked size, so every prediction is resized back
BACKENDS = ("torch-eager-fp32", "onnxruntime-cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A saved random-weight segmentation model (a tiny timm CNN) and an images/ + masks/ folder
    of three frames whose masks hold every class, 255 (ignore) and an id beyond the classes."""
    import torch
    from PIL import Image

    import surgenet

    root = tmp_path_factory.mktemp("resolution")
    torch.manual_seed(0)
    model = surgenet.load_model("test_convnext", task="segmentation", num_classes=NUM_CLASSES, pretrained=False,
                                pyramid_channels=32, segmentation_channels=32)
    model.save_pretrained(root / "model")
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        image = (rng.random((*FRAME, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / "data" / "images" / f"v1_{i}.jpg")
        mask = np.zeros(FRAME, np.uint8)
        mask[:, 30:60], mask[:, 60:] = 1, 2
        mask[20:30] = 255  # unlabelled
        mask[:5, :10] = 7  # outside the classes: ignored too
        Image.fromarray(np.roll(mask, 10 * i, axis=1)).save(root / "data" / "masks" / f"v1_{i}.png")
    return root


def numpy_miou(model_dir, data_dir, hw):
    """The mIoU of eager FP32 at ``hw``, computed here: the model on each frame resized to ``hw``,
    its logits resized bilinearly to the frame, the argmax, and per class |P∩T| / |P∪T| over all
    frames' labelled pixels (numpy), averaged over the classes that occur."""
    import torch
    import torch.nn.functional as F

    import surgenet
    from surgenet.io.images import read_image
    from surgenet.transforms import ImageTransform

    model = surgenet.load_model(model_dir).eval()
    transform = ImageTransform(hw, model.config["mean"], model.config["std"])
    inter, union = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for image in sorted((data_dir / "images").iterdir()):
        from PIL import Image

        mask = np.asarray(Image.open(data_dir / "masks" / f"{image.stem}.png"))
        with torch.inference_mode():
            logits = model(transform(read_image(image))[None])
            pred = F.interpolate(logits, size=mask.shape, mode="bilinear", align_corners=False).argmax(1)[0].numpy()
        labelled = mask < NUM_CLASSES
        for c in range(NUM_CLASSES):
            inter[c] += np.sum((pred == c) & (mask == c) & labelled)
            union[c] += np.sum(((pred == c) | (mask == c)) & labelled)
    return float(np.mean(inter[union > 0] / union[union > 0]))


def test_every_size_and_backend_gets_a_row_and_the_fp32_miou_is_the_numpy_one(setup, capsys):
    out_json, out_md = setup / "res.json", setup / "res.md"
    code = resolution.main(["--model", str(setup / "model"), "--data", str(setup / "data"), "--sizes", "64", "64x96",
                            "--backends", *BACKENDS, "--warmup", "1", "--iters", "3", "--json", str(out_json),
                            "--out", str(out_md), "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(out_json.read_text())
    rows = report["results"]
    wanted = {(size, backend) for size in ("64x64", "64x96") for backend in BACKENDS}
    assert {(r["size_label"], r["backend"]) for r in rows} == wanted and len(rows) == 4
    table = [line for line in stdout.splitlines() if line.startswith("| 64x")]
    assert {tuple(c.strip() for c in line.strip("|").split("|")[:2]) for line in table} == wanted
    assert out_md.read_text().strip() == stdout.split("wrote")[0].strip()  # the report file is the screen's
    for r in rows:
        assert 0 < r["median_ms"] <= r["p90_ms"] and r["fps"] == pytest.approx(1000 / r["median_ms"])
        assert r["timed_calls"] == 3 and r["gflops_per_frame"] > 0 and 0 <= r["miou"] <= 1
        assert len(r["per_class_iou"]) == NUM_CLASSES
    by = {(r["size_label"], r["backend"]): r for r in rows}
    for size, hw in (("64x64", (64, 64)), ("64x96", (64, 96))):
        fp32 = by[(size, "torch-eager-fp32")]
        assert fp32["miou"] == pytest.approx(numpy_miou(setup / "model", setup / "data", hw), abs=1e-12)
        assert by[(size, "onnxruntime-cpu")]["miou"] == pytest.approx(fp32["miou"], abs=2e-3)  # the same network
        # PyTorch runs here; a file backend in a child process, away from PyTorch's oneDNN
        assert (fp32["process"], by[(size, "onnxruntime-cpu")]["process"]) == ("this", "child")
    # The reference is eager FP32 at the first size (256 is not benchmarked): its delta is 0.
    assert report["settings"]["reference"]["size"] == [64, 64]
    assert by[("64x64", "torch-eager-fp32")]["miou_delta"] == 0.0
    assert by[("64x96", "torch-eager-fp32")]["miou_delta"] == pytest.approx(
        100 * (by[("64x96", "torch-eager-fp32")]["miou"] - by[("64x64", "torch-eager-fp32")]["miou"]))
    machine = report["machine"]
    assert machine["load_average_before"] is not None and machine["load_average_after"] is not None
    assert any(line.startswith("CPU: ") and "load average" in line for line in stdout.splitlines())
    assert any(line.startswith("int8 ") and "--calib" in line for line in stdout.splitlines())  # how to get it


def test_in_process_gives_the_same_masks_as_the_child_process(setup, capsys):
    """--in-process runs ONNX Runtime here: the same graph on the same frames, so the same mIoU as
    the default child-process row (the measurement is one function in both)."""
    reports = {}
    for flag in ([], ["--in-process"]):
        out_json = setup / f"res{len(flag)}.json"
        assert resolution.main(["--model", str(setup / "model"), "--data", str(setup / "data"), "--sizes", "64",
                                "--backends", "onnxruntime-cpu", "--warmup", "0", "--iters", "1", "--json",
                                str(out_json), "--no-progress", *flag]) == 0
        reports[bool(flag)] = {r["backend"]: r for r in json.loads(out_json.read_text())["results"]}
    capsys.readouterr()
    child, here = reports[False]["onnxruntime-cpu"], reports[True]["onnxruntime-cpu"]
    assert (child["process"], here["process"]) == ("child", "this")
    assert child["miou"] == here["miou"] and child["per_class_iou"] == here["per_class_iou"]


def test_under_an_isa_cap_the_rows_of_runtimes_that_ignore_it_are_marked(setup, capsys, monkeypatch):
    """ONNX Runtime's kernels follow CPUID, not ONEDNN_MAX_CPU_ISA: under a cap its row is the CPU's
    full ISA and must say so; eager PyTorch's row (oneDNN reads the cap) is not marked."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    out_json = setup / "capped.json"
    assert resolution.main(["--model", str(setup / "model"), "--data", str(setup / "data"), "--sizes", "64",
                            "--backends", *BACKENDS, "--warmup", "0", "--iters", "1", "--json", str(out_json),
                            "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    rows = {r["backend"]: r for r in json.loads(out_json.read_text())["results"]}
    assert rows["onnxruntime-cpu"]["ignores_isa_cap"] and not rows["torch-eager-fp32"]["ignores_isa_cap"]
    assert "| onnxruntime-cpu † " in stdout and "| torch-eager-fp32 † " not in stdout
    assert any(line.startswith("† ignores ONEDNN_MAX_CPU_ISA") for line in stdout.splitlines())


@pytest.mark.parametrize("argv, message", [
    (["--data", "{root}/no-such-folder"], "is not a folder"),
    (["--sizes", "64", "50x64"], "50 is not a multiple of 32"),
    (["--backends", "fastest-ever"], "unknown backends fastest-ever"),
    (["--backends", "openvino-int8"], "--backends openvino-int8 needs --calib FRAMES_DIR"),
    (["--sizes", "64", "--reference-size", "256"], "--reference-size 256x256 is not one of --sizes 64x64"),
])
def test_user_mistakes_give_one_line_and_exit_2(setup, argv, message, capsys):
    base = {"--model": str(setup / "model"), "--data": str(setup / "data")}
    argv = [a.replace("{root}", str(setup)) for a in argv]
    for flag, value in base.items():
        if flag not in argv:
            argv = [flag, value, *argv]
    code = resolution.main([*argv, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("resolution.py: error:") and message in err[0], err


def test_a_size_that_is_not_a_size_is_an_argument_error(setup, capsys):
    with pytest.raises(SystemExit) as exc:
        resolution.main(["--model", str(setup / "model"), "--data", str(setup / "data"), "--sizes", "big"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "'big' is not a size" in err[0]
