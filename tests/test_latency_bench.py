"""benchmarks/latency.py on a tiny size: the JSON schema and numbers that make sense."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_cpu_benchmark_on_a_tiny_size_writes_sane_json_and_a_plot(tmp_path):
    out = tmp_path / "latency.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--model", "surgenet-caformer", "--task",
           "segmentation", "--num-classes", "3", "--imgsz", "64", "--batch", "1", "2", "--iters", "3", "--warmup", "1",
           "--backends", "torch-eager-fp32", "onnxruntime-cpu", "torch-cuda-fp16", "--no-pretrained",
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
        assert "CUDA" in reasons["torch-cuda-fp16"]
    assert report["model"]["gflops_per_frame"]["64x64"] > 0
    assert "| backend" in proc.stdout  # the table on screen
    assert [(g["batch"], g["imgsz"]) for g in report["summary"]] == [(1, [64, 64]), (2, [64, 64])]


def test_fastest_backends_picks_the_fastest_faithful_backend_per_shape():
    from latency import fastest_backends

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
    from _bench_utils import gemm_gflops

    rates = gemm_gflops(size=96, repeats=2)
    # 2 * 96^3 FLOPs take between a nanosecond and a second on any CPU this runs on
    assert 2 * 96**3 / 1e9 / 1.0 < rates["float32"] < 2 * 96**3 / 1e-9 / 1e9


@pytest.mark.parametrize("argv, message", [
    (["--model", "no-such-model", "--task", "segmentation", "--num-classes", "3"], "no-such-model"),
    (["--model", "surgenet-caformer", "--task", "segmentation"], "num_classes is required"),
    (["--model", "surgenet-caformer", "--task", "cvs", "--backends", "fastest-ever"], "unknown backends fastest-ever"),
])
def test_user_mistakes_give_one_line_and_exit_2(argv, message, capsys):
    from latency import main

    code = main([*argv, "--no-pretrained", "--no-roofline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("latency.py: error:") and message in err[0]
