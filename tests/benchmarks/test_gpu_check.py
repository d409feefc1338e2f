"""benchmarks/gpu_check.sh and its driver: without CUDA every part skips in one line; the part
runner records what a part did (ok, failed with its last line, timed out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
gpu_check = load_script("benchmarks/gpu_check.py")


def test_the_script_skips_every_part_in_one_line_without_cuda(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["cuda"] is False
    build_parts = gpu_check.build_parts

    names = [p.name for p in build_parts(None)]
    assert list(report["parts"]) == names and len(names) == 7
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("gpu_check: install: skipped: no CUDA")
    for name in names:  # one line per part, saying that it skips and why
        (line,) = [l for l in lines if l.startswith(f"gpu_check: {name}: ")]
        assert line.startswith(f"gpu_check: {name}: skipped: no CUDA"), line
        assert report["parts"][name]["status"] == "skipped"
    assert (out / "gpu_check.log").read_text().count("skipped") == len(names)


def test_the_script_refuses_a_file_as_its_output_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(target)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "is a file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_run_part_records_success_failure_and_timeouts(tmp_path):
    Part = gpu_check.Part; run_part = gpu_check.run_part

    logged: list[str] = []

    def part(code: str, timeout: int = 30) -> dict:
        return run_part(Part("p", lambda s: [[sys.executable, "-c", code]], timeout), tmp_path, timeout, logged.append)

    ok = part("print('fine')")
    assert ok["status"] == "ok" and ok["seconds"] >= 0 and any("fine" in line for line in logged)
    failed = part("import sys; print('first'); sys.exit('the last line says why')")
    assert failed == {**failed, "status": "failed", "returncode": 1, "reason": "the last line says why"}
    slow = part("import time; time.sleep(30)", timeout=1)
    assert slow["status"] == "timed out" and slow["seconds"] < 20


def test_latency_commands_cover_every_cuda_backend_of_the_registry(tmp_path):
    LATENCY_MODELS = gpu_check.LATENCY_MODELS; build_parts = gpu_check.build_parts

    from surgenet.runtime.registry import BACKENDS

    cuda = {n for n, b in BACKENDS.items() if b.device == "cuda"}
    assert {"torch-cuda-graphs-fp16", "torch-cuda-graphs-bf16"} <= cuda
    latency = [p for p in build_parts(None) if p.name.startswith("latency-")]
    assert len(latency) == len(LATENCY_MODELS) == 3
    for p in latency:
        eager, graphs = p.make(tmp_path)  # the compiled backends in a run of their own
        covered = set()
        for command in (eager, graphs):
            covered |= set(command[command.index("--backends") + 1:command.index("--reference")])
            assert command[command.index("--reference") + 1] == "torch-cuda-fp32"
            assert command[command.index("--imgsz") + 1:command.index("--batch")] == ["256", "512"]
            assert command[command.index("--batch") + 1:command.index("--backends")] == ["1", "8"]
        assert covered == cuda and "torch-cuda-graphs-fp16" not in eager


def test_latency_results_merge_both_runs_and_keep_the_eager_rows_of_a_cut_run(tmp_path):
    _latency_results = gpu_check._latency_results

    def report(rows):
        return {"results": [{"backend": b, "batch": 1, "imgsz": [256, 256], "median_ms": ms} for b, ms in rows],
                "unavailable": [], "summary": [], "settings": {"reference": "torch-cuda-fp32"},
                "model": {"gflops_per_frame": {"256x256": 1.0}}}

    (tmp_path / "m-eager.json").write_text(json.dumps(report([("torch-cuda-fp32", 2.0), ("torch-cuda-fp16", 1.0)])))
    read = _latency_results("m")
    assert [r["backend"] for r in read(tmp_path)["rows"]] == ["torch-cuda-fp32", "torch-cuda-fp16"]
    (tmp_path / "m-graphs.json").write_text(json.dumps(report([("torch-cuda-fp32", 2.1),
                                                               ("torch-cuda-graphs-fp16", 0.4)])))
    rows = read(tmp_path)["rows"]
    assert [(r["backend"], r["median_ms"]) for r in rows] == [
        ("torch-cuda-fp32", 2.0), ("torch-cuda-fp16", 1.0), ("torch-cuda-graphs-fp16", 0.4)]
    assert _latency_results("none")(tmp_path) is None


def test_predict_runs_the_eager_and_the_cuda_graphs_backend_on_the_gpu(tmp_path):
    build_parts = gpu_check.build_parts

    (predict,) = [p for p in build_parts(None) if p.name == "predict-cuda"]
    eager, graphs = predict.make(tmp_path)  # no clip: generated frames
    assert len(list((tmp_path / "predict-frames" / "images").glob("*.jpg"))) == 16
    for command in (eager, graphs):
        assert command[command.index("--device") + 1] == "cuda"
    assert "--backend" not in eager and graphs[graphs.index("--backend") + 1] == "torch-cuda-graphs-fp16"
    assert eager[:eager.index("--out")] == graphs[:graphs.index("--backend")]  # the same run otherwise
