"""benchmarks/pretrain_throughput.py on tiny sizes: one row per architecture, each measured alone."""

from __future__ import annotations

import json
import subprocess
import sys
from tests.helpers.paths import REPO

ROOT = REPO


def test_each_architecture_reports_its_own_peak_memory(tmp_path):
    out = tmp_path / "throughput.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), "--arch", "surgenet-pvtv2",
           "surgenet-convnextv2", "--batch-size", "2", "--global-size", "64", "--local-size", "32",
           "--local-crops", "2", "--out-dim", "256", "--steps", "1", "--warmup", "1", "--device", "cpu",
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["arch"] for r in rows] == ["pvt_v2_b2", "convnextv2_tiny"]
    for r in rows:  # in one process the second architecture read the first one's high-water mark: 0 MB
        assert r["peak_memory_mb"] > 10 and r["images_per_s"] > 0
        assert abs(r["images_per_s"] - 2 / r["s_per_step"]) < 0.02  # batch 2 per step
