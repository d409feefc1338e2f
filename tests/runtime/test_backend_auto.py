"""--backend auto: the fastest candidate whose decisions agree with FP32 wins, and the choice is cached."""

from __future__ import annotations

import numpy as np
import pytest

from surgenet.runtime import auto

REF = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
FRAMES = [np.zeros((1, 3, 8, 8), np.float32)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _runner(clock: Clock, ms: float, logits: np.ndarray):
    def run(x):
        clock.now += ms / 1000.0
        return logits
    return lambda: run


def test_fastest_passing_candidate_wins_and_a_failing_one_is_not_timed():
    clock = Clock()
    flipped = REF.copy()
    flipped[0, :, :2] = -flipped[0, :, :2]  # a quarter of the pixels change their argmax
    openers = {"ref": _runner(clock, 10, REF), "a": _runner(clock, 5, REF), "bad": _runner(clock, 1, flipped)}
    best, results = auto.choose(openers, "ref", FRAMES, "segmentation", clock=clock, warmup=1, runs=3)
    by = {m.backend: m for m in results}
    assert best == "a" and by["a"].median_ms == pytest.approx(5.0) and by["ref"].median_ms == pytest.approx(10.0)
    assert not by["bad"].passed and by["bad"].median_ms is None and "agreement" in by["bad"].note


def test_the_cache_key_changes_with_the_model_file(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"one")
    first = auto.cache_key(auto.files_hash([model]), (8, 8), 2, "frames")
    model.write_bytes(b"two")
    assert auto.cache_key(auto.files_hash([model]), (8, 8), 2, "frames") != first


# ----------------------------------------------------------------------------- a real export folder
SIZE = (32, 32)


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory):
    """A tiny segmentation model exported to ONNX by surgenet_export, as a user's folder would be."""
    pytest.importorskip("onnxruntime")
    from tests.helpers.exports import write_tiny_export

    return write_tiny_export(tmp_path_factory.mktemp("auto-export"), size=SIZE)


def _no_timing(*args, **kwargs):
    raise AssertionError("a cached choice must not be measured again")


def test_select_backend_measures_once_then_reads_the_cache(export_folder, tmp_path, monkeypatch):
    from surgenet.runtime.registry import BACKENDS

    here = {b.name for b in auto.candidates(export_folder)}
    assert "onnxruntime-cpu" in here  # the reference: ONNX Runtime is installed
    first = auto.select_backend(export_folder, cache_root=tmp_path, warmup=1, runs=2)
    assert first.backend in here and first.backend in BACKENDS and not first.cached
    by = {m.backend: m for m in first.measurements}
    assert set(by) == here
    assert by["onnxruntime-cpu"].passed and by["onnxruntime-cpu"].agreement == 1.0  # FP32 against itself
    assert by[first.backend].passed and by[first.backend].median_ms == min(
        m.median_ms for m in first.measurements if m.passed)
    stored = auto.read_cache(tmp_path)
    assert list(stored) == [first.key] and stored[first.key]["backend"] == first.backend

    monkeypatch.setattr(auto, "median_ms", _no_timing)
    again = auto.select_backend(export_folder, cache_root=tmp_path, warmup=1, runs=2)
    assert again.cached and again.backend == first.backend and again.key == first.key
    assert "cached" in again.summary() and again.summary().startswith(f"backend auto -> {first.backend} (")

    with pytest.raises(AssertionError, match="must not be measured"):  # refresh measures whatever is cached
        auto.select_backend(export_folder, cache_root=tmp_path, refresh=True, warmup=1, runs=2)


def _auto_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("backend auto")]


def test_predict_on_an_export_folder_picks_caches_and_can_be_overridden(export_folder, tmp_path, capsys,
                                                                        monkeypatch):
    from importlib.resources import files
    from pathlib import Path

    from surgenet.cli import main

    sample = Path(str(files("surgenet") / "assets" / "sample_frame.png"))
    monkeypatch.setenv("SURGENET_CACHE", str(tmp_path / "cache"))
    here = {b.name for b in auto.candidates(export_folder)}
    base = ["predict", str(sample), "--model", str(export_folder), "--no-overlay"]

    assert main(base + ["--out", str(tmp_path / "first")]) == 0  # no --backend: auto
    lines = _auto_lines(capsys.readouterr().out)
    assert len(lines) == 1 and "measured" in lines[0], lines
    chosen = lines[0].split()[3]
    assert chosen in here and (tmp_path / "cache" / auto.CACHE_FILE).is_file()
    assert (tmp_path / "first" / "masks" / f"{sample.stem}.png").is_file()

    measured = []
    real = auto.median_ms
    monkeypatch.setattr(auto, "median_ms", _no_timing)
    assert main(base + ["--out", str(tmp_path / "cached")]) == 0  # a cache hit: nothing timed
    lines = _auto_lines(capsys.readouterr().out)
    assert len(lines) == 1 and lines[0].split()[3] == chosen and "cached" in lines[0], lines

    assert main(base + ["--backend", "onnxruntime", "--out", str(tmp_path / "named")]) == 0  # a name overrides
    assert _auto_lines(capsys.readouterr().out) == []

    monkeypatch.setattr(auto, "median_ms", lambda *a, **k: measured.append(a) or real(*a, **k))
    assert main(base + ["--rebenchmark", "--out", str(tmp_path / "again")]) == 0  # measured again
    lines = _auto_lines(capsys.readouterr().out)
    assert len(lines) == 1 and "measured" in lines[0] and len(measured) >= 1, lines

    assert main(base + ["--backend", "onnxruntime", "--rebenchmark", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rebenchmark go with --backend auto" in err[0], err


def test_the_summary_is_one_line_naming_the_choice_and_why_the_others_lost():
    choice = auto.Choice("b", [auto.Measurement("b", 5.0, 1.0, passed=True),
                               auto.Measurement("a", 9.31, 1.0, passed=True),
                               auto.Measurement("c", None, 0.9, note="agreement 90.00 % < 99.5 %")],
                         "CPU X (avx2)", "frames", "key", cached=True)
    assert choice.summary() == ("backend auto -> b (5.0 ms, agreement 100.0 %; cached, CPU X (avx2)) "
                                "[others: a 9.3 ms; c failed: agreement 90.00 % < 99.5 %]")


def test_the_table_lists_every_candidate_fastest_first_with_its_figures():
    choice = auto.Choice("b", [auto.Measurement("a", 9.31, 1.0, 0.0, passed=True),
                               auto.Measurement("c", None, 0.9912, -0.004, note="agreement 99.12 % < 99.5 %"),
                               auto.Measurement("b", 5.04, 0.99951, 0.123, passed=True)],
                         "CPU X (avx2)", "frames", "key")
    rows = [line.split() for line in choice.table().splitlines()]
    assert rows[0][:2] == ["backend", "ms"]
    body = [r for r in rows[2:]]  # header, rule, then one row per candidate
    assert [r[0] if r[0] != "*" else r[1] for r in body] == ["b", "a", "c"]  # timed by speed, the untimed last
    assert body[0] == ["*", "b", "5.0", "99.95", "+0.12", "chosen"]
    assert body[1] == ["a", "9.3", "100.00", "+0.00", "passed"]
    assert body[2][:4] == ["c", "-", "99.12", "+0.00"] and " ".join(body[2][4:]) == "agreement 99.12 % < 99.5 %"


def test_the_cache_keeps_every_entry_and_an_unreadable_file_is_an_empty_cache(tmp_path):
    def choice(key: str, backend: str) -> auto.Choice:
        return auto.Choice(backend, [auto.Measurement(backend, 1.5, 1.0, passed=True)], "CPU X", "frames", key)

    auto.write_cache(choice("k1", "onnxruntime-cpu"), tmp_path)
    auto.write_cache(choice("k2", "openvino-f32"), tmp_path)
    entries = auto.read_cache(tmp_path)
    assert {k: v["backend"] for k, v in entries.items()} == {"k1": "onnxruntime-cpu", "k2": "openvino-f32"}
    back = auto.Choice.from_json(entries["k2"], "k2")
    assert back.cached and back.measured().median_ms == 1.5 and back.key == "k2"
    (tmp_path / auto.CACHE_FILE).write_text("{half a file")
    assert auto.read_cache(tmp_path) == {}
    assert auto.read_cache(tmp_path / "nowhere") == {}
    assert auto.cache_key("m", (8, 8), 1, "frames") != auto.cache_key("m", (8, 8), 2, "frames")  # threads count


def test_the_cache_folder_is_surgenet_cache_else_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGENET_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert auto.cache_dir() == tmp_path / "own"
    monkeypatch.delenv("SURGENET_CACHE")
    assert auto.cache_dir() == tmp_path / "xdg" / "surgenet"


def test_auto_frames_with_masks_judge_the_miou_drop_and_wrong_classes_are_refused(export_folder, tmp_path):
    from PIL import Image

    from surgenet.exceptions import InputError

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / "images" / f"f{i}.png")
        Image.fromarray(rng.integers(0, 4, (40, 48), dtype=np.uint8)).save(data / "masks" / f"f{i}.png")
    choice = auto.select_backend(export_folder, frames_dir=data, cache_root=tmp_path / "cache", warmup=1, runs=1)
    assert choice.frames.endswith("with masks") and choice.frames.startswith("2 frames of")
    by = {m.backend: m for m in choice.measurements}
    assert by["onnxruntime-cpu"].miou_drop == 0.0  # FP32 against itself
    Image.fromarray(np.full((40, 48), 9, np.uint8)).save(data / "masks" / "f1.png")  # a class the model lacks
    with pytest.raises(InputError, match="masks hold class 9, and the model has 4 classes"):
        auto.select_backend(export_folder, frames_dir=data, cache_root=tmp_path / "cache", refresh=True)


def test_an_isa_cap_leaves_out_the_runtimes_that_ignore_it(export_folder, monkeypatch):
    """Choosing for an AVX2-only CPU on a newer one: ONNX Runtime would time its AVX-512 kernels."""
    pytest.importorskip("openvino")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    free = {b.name for b in auto.candidates(export_folder)}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    capped = auto.candidates(export_folder)
    names = {b.name for b in capped}
    assert "onnxruntime-cpu" in free and "onnxruntime-cpu" not in names
    assert names == {n for n in free if not n.startswith("onnxruntime")} - {"openvino-bf16", "openvino-f16",
                                                                          "openvino-int8-bf16"}
    assert auto.reference_of(capped).name == "openvino-f32"
