"""benchmarks/latency.py on a tiny size: the JSON schema and numbers that make sense."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.helpers.paths import REPO
from tests.helpers.scripts import load_script

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

ROOT = REPO
latency = load_script("benchmarks/latency.py")


def make_eval_data(root, n=2, size=(40, 56), num_classes=3):
    """images/ + masks/ with a few random frames (masks include 255 = ignore)."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"f{i}.jpg")
        mask = rng.integers(0, num_classes, size).astype(np.uint8)
        mask[:4] = 255
        Image.fromarray(mask).save(root / "masks" / f"f{i}.png")
    return root


def test_cpu_benchmark_on_a_tiny_size_writes_sane_json_and_a_plot(tmp_path):
    import surgenet

    # a saved folder stands for a fine-tuned model, so fidelity is judged (on random masks: the
    # numbers mean nothing, the mechanics are what is checked)
    surgenet.load_model("surgenet-caformer", task="segmentation", num_classes=3,
                        pretrained=False).save_pretrained(tmp_path / "saved")
    out = tmp_path / "latency.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--model", str(tmp_path / "saved"),
           "--imgsz", "64", "--batch", "1", "2", "--iters", "3", "--warmup", "1",
           "--backends", "torch-eager-fp32", "onnxruntime-cpu", "torch-cuda-fp16", "torch-cuda-graphs-fp16",
           "--eval-data", str(make_eval_data(tmp_path / "eval")),
           "--no-roofline", "--json", str(out)]  # the roofline has its own test below, at a tiny size
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 1000
    assert {"cpu", "versions", "cpu_flags"} <= set(report["machine"])
    assert report["machine"]["versions"]["onnxruntime"]
    assert report["machine"]["gemm_gflops"] == {}
    rows = report["results"]
    assert {(r["backend"], r["batch"]) for r in rows} == {
        (b, n) for b in ("torch-eager-fp32", "onnxruntime-cpu") for n in (1, 2)}
    for r in rows:
        assert r["imgsz"] == [64, 64]
        assert 0 < r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["fps"] == pytest.approx(r["batch"] * 1000 / r["median_ms"])
        assert 0.0 <= r["argmax_agreement"] <= 1.0 and r["max_abs_err"] >= 0
    for r in rows:
        if r["backend"] == "torch-eager-fp32":
            assert r["speedup"] == 1.0 and r["max_abs_err"] == 0.0 and r["argmax_agreement"] == 1.0
        else:  # an FP32 graph of the same network agrees with the eager model
            assert r["argmax_agreement"] > 0.99 and r["max_abs_err"] < 1e-3
    reasons = {u["backend"]: u["reason"] for u in report["unavailable"]}
    import torch

    if not torch.cuda.is_available():
        assert "CUDA" in reasons["torch-cuda-fp16"] and "CUDA" in reasons["torch-cuda-graphs-fp16"]
    assert report["model"]["gflops_per_frame"]["64x64"] > 0
    assert "| backend" in proc.stdout  # the table on screen
    assert [(g["batch"], g["imgsz"]) for g in report["summary"]] == [(1, [64, 64]), (2, [64, 64])]
    assert report["fidelity"]["judged"] is True and report["summary"][0]["criterion"] == "mIoU drop <= 0.5 points"
    for r in rows:
        assert 0.0 <= r["miou"] <= 1.0 and len(r["per_class_iou"]) == 3
        if r["backend"] == "torch-eager-fp32":
            assert r["miou_drop"] == 0.0 and r["eval_agreement"] == 1.0
        else:  # the same FP32 network: the same segmentation
            assert abs(r["miou_drop"]) < 0.5 and r["eval_agreement"] > 0.99


def test_fastest_backends_picks_the_fastest_faithful_backend_per_shape():
    fastest_backends = latency.fastest_backends

    def row(backend, ms, agreement, size=256):
        return {"backend": backend, "device": "cpu", "batch": 1, "imgsz": [size, size], "median_ms": ms,
                "speedup": 100.0 / ms, "argmax_agreement": agreement}

    rows = [row("torch-eager-fp32", 100.0, 1.0), row("openvino-bf16", 25.0, 0.988),
            row("openvino-f32", 70.0, 1.0), row("onnxruntime-cpu", 72.0, 0.9999),
            row("torch-eager-fp32", 400.0, 1.0, 512), row("openvino-bf16", 100.0, 0.99, 512)]
    by_size = {g["imgsz"][0]: g for g in fastest_backends(rows)}
    assert by_size[256]["fastest"] == "openvino-bf16" and by_size[256]["fastest_speedup"] == 4.0
    assert by_size[256]["fastest_faithful"] == "openvino-f32"
    assert by_size[256]["fastest_faithful_speedup"] == pytest.approx(100 / 70)
    assert by_size[512]["fastest_faithful"] == "torch-eager-fp32"
    assert fastest_backends(rows, min_agreement=0.98)[0]["fastest_faithful"] == "openvino-bf16"


def test_roofline_measures_a_matrix_product_rate():
    from surgenet.runtime.measure import gemm_gflops

    rates = gemm_gflops(size=96, repeats=2)
    # 2 * 96^3 FLOPs take between a nanosecond and a second on any CPU this runs on
    assert 2 * 96**3 / 1e9 / 1.0 < rates["float32"] < 2 * 96**3 / 1e-9 / 1e9


@pytest.mark.parametrize("argv, message", [
    (["--model", "no-such-model", "--task", "segmentation", "--num-classes", "3"], "no-such-model"),
    (["--model", "surgenet-caformer", "--task", "segmentation"], "num_classes is required"),
    (["--model", "surgenet-caformer", "--task", "cvs", "--backends", "fastest-ever"], "unknown backends fastest-ever"),
    (["--model", "surgenet-caformer", "--task", "segmentation", "--num-classes", "3", "--backends",
      "onnxruntime-cpu", "openvino-int8"], "--backends openvino-int8 needs --calib FRAMES_DIR: a folder of ~100 real"),
    (["--model", "surgenet-caformer", "--task", "segmentation", "--num-classes", "3", "--calib", "no-such-dir"],
     "--calib no-such-dir is not a folder; pass --calib FRAMES_DIR: a folder of ~100 real surgical frames"),
])
def test_user_mistakes_give_one_line_and_exit_2(argv, message, capsys):
    main = latency.main

    code = main([*argv, "--no-pretrained", "--no-roofline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("latency.py: error:") and message in err[0]


def test_fidelity_is_not_judged_on_random_weights(tmp_path):
    build_parser = latency.build_parser; fidelity_plan = latency.fidelity_plan

    eval_dir = make_eval_data(tmp_path / "eval")
    config = {"task": "segmentation"}
    args = build_parser().parse_args(["--model", "surgenet-caformer", "--no-pretrained", "--eval-data", str(eval_dir)])
    pairs, how = fidelity_plan(args, config)
    assert pairs is None and "random weights" in how and "not judged" in how
    args = build_parser().parse_args(["--model", str(tmp_path), "--eval-data", str(eval_dir), "--eval-size", "1"])
    pairs, how = fidelity_plan(args, config)  # a folder: a saved (fine-tuned) model
    assert [p.name for p in pairs[0]] == ["f0.jpg"] and [p.name for p in pairs[1]] == ["f0.png"]


def test_judge_fidelity_scores_a_backend_against_the_masks(tmp_path):
    import numpy as np
    judge_fidelity = latency.judge_fidelity

    eval_dir = make_eval_data(tmp_path / "eval", n=1, size=(4, 4), num_classes=2)
    from PIL import Image

    Image.fromarray(np.array([[0, 0, 1, 1]] * 3 + [[255, 0, 1, 1]], np.uint8)).save(eval_dir / "masks" / "f0.png")

    def runner(x):  # predicts class 1 on the right three quarters of any frame, at the frame's size
        logits = np.zeros((1, 2, *x.shape[2:]), np.float32)
        logits[:, 1, :, x.shape[3] // 4:] = 1.0
        return logits

    pairs = ([eval_dir / "images" / "f0.jpg"], [eval_dir / "masks" / "f0.png"])
    config = {"mean": [0.5] * 3, "std": [0.5] * 3, "num_classes": 2}
    scores, preds = judge_fidelity(runner, pairs, (4, 8), config, reference=None)
    # at 4x8 the prediction is class 0 on columns 0-1 -> mask column 0; class 1 on columns 2-7 ->
    # mask columns 1-3. Class 0: 3 hits, 3 predicted (the ignored pixel is not counted), 7 true ->
    # 3/7; class 1: 6 hits, 9 predicted, 6 true -> 6/9.
    assert scores["per_class_iou"] == pytest.approx([3 / 7, 6 / 9])
    assert scores["miou"] == pytest.approx((3 / 7 + 6 / 9) / 2) and scores["eval_agreement"] == 1.0
    def opposite(x):  # class 0 where runner() says 1 and the reverse
        logits = np.zeros((1, 2, *x.shape[2:]), np.float32)
        logits[:, 0, :, x.shape[3] // 4:] = 1.0
        logits[:, 1, :, :x.shape[3] // 4] = 1.0
        return logits

    swapped, _ = judge_fidelity(opposite, pairs, (4, 8), config, reference=preds)
    assert swapped["eval_agreement"] == 0.0  # every pixel's class swapped


def test_summary_picks_the_fastest_backend_within_the_miou_bar():
    fastest_backends = latency.fastest_backends

    def row(backend, ms, drop):
        return {"backend": backend, "device": "cpu", "batch": 1, "imgsz": [256, 256], "median_ms": ms,
                "fps": 1000 / ms, "speedup": 100.0 / ms, "argmax_agreement": 0.97, "miou_drop": drop}

    rows = [row("torch-eager-fp32", 100.0, 0.0), row("openvino-int8", 20.0, 1.2),
            row("openvino-bf16", 25.0, 0.4), row("openvino-f32", 70.0, 0.0)]
    (g,) = fastest_backends(rows, max_miou_drop=0.5)
    assert g["fastest"] == "openvino-int8" and g["fastest_miou_drop"] == 1.2
    assert g["fastest_faithful"] == "openvino-bf16" and g["fastest_faithful_fps"] == 40.0
    assert fastest_backends(rows, max_miou_drop=1.5)[0]["fastest_faithful"] == "openvino-int8"
    assert fastest_backends(rows)[0]["fastest_faithful"] is None  # by agreement (97 %) none passes 99.5 %
