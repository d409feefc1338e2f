"""`surgenet batch` on a surgenet-export folder: --backend auto chosen once in the driver, printed,
recorded in OUT/run.json and the table's metadata, and opened by every worker; named backends too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pq = pytest.importorskip("pyarrow.parquet", reason="archive jobs write Parquet: pip install 'surgenet[video]'")
pytest.importorskip("onnxruntime", reason="an export folder runs with the export extra")

from surgenet.runtime import auto  # noqa: E402
from tests.helpers.cli import exit_code  # noqa: E402
from tests.helpers.exports import SIZE, write_tiny_export  # noqa: E402


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory) -> Path:
    """A tiny segmentation model exported to ONNX by surgenet_export, as a user's folder would be."""
    return write_tiny_export(tmp_path_factory.mktemp("batch-export"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Three frame folders (three inputs), frames of two sizes."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    for k, size in enumerate(((40, 48), (24, 36), (40, 48))):
        folder = root / f"case_{k}"
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    return root


def _spy(monkeypatch) -> list[dict]:
    """Counts the calls of the one selection function (the workers must never call it)."""
    calls: list[dict] = []
    real = auto.select_backend

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(auto, "select_backend", spy)
    return calls


def _auto_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("backend auto")]


def test_batch_of_an_export_folder_chooses_once_records_it_and_reads_the_cache(export_folder, archive, tmp_path,
                                                                               monkeypatch, capsys):
    monkeypatch.setenv("SURGENET_CACHE", str(tmp_path / "cache"))
    calls = _spy(monkeypatch)
    out = tmp_path / "out"
    argv = ["batch", str(archive), "--model", str(export_folder), "--out", str(out), "--batch-size", "2"]
    assert exit_code(argv) == 0  # no --backend, no --task: auto, the task from the export
    assert len(calls) == 1  # once for the three inputs, in the driver
    lines = _auto_lines(capsys.readouterr().out)
    assert len(lines) == 1 and "measured" in lines[0] and " ms" in lines[0] and "agreement" in lines[0], lines
    chosen = lines[0].split()[3]
    assert chosen in {b.name for b in auto.candidates(export_folder)}

    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == chosen and run["backend_auto"]["backend"] == chosen and not run["backend_auto"]["cached"]
    assert {m["backend"] for m in run["backend_auto"]["measurements"]} >= {chosen, "onnxruntime-cpu"}
    table = pq.read_table(out / "predictions.parquet")
    meta = json.loads(table.schema.metadata[b"surgenet"])
    assert meta["backend"] == chosen and meta["backend_auto"].startswith(f"backend auto -> {chosen} (")
    assert meta["task"] == "segmentation" and meta["preprocessing"]["size"] == list(SIZE)
    assert table.num_rows == 9 and sorted(set(table.column("video").to_pylist())) == ["case_0", "case_1", "case_2"]
    assert Image.open(out / "case_1" / "masks" / "000000.png").size == (36, 24)  # each frame at its own size
    shares = np.asarray(table.column("probabilities").to_pylist())
    assert shares.shape == (9, 4) and np.allclose(shares.sum(1), 1.0)

    # Independently: the FP32 ONNX graph on the first frame gives the mask the job wrote (the chosen
    # backend agrees with FP32 on >= 99.5 % of the pixels).
    import surgenet
    from surgenet.runtime.registry import open_runner

    predictor = surgenet.Predictor(open_runner("onnxruntime-cpu", export_folder), batch_size=1)
    expected = predictor.predict(np.asarray(Image.open(archive / "case_0" / "000000.png").convert("RGB"))).class_map
    written = np.asarray(Image.open(out / "case_0" / "masks" / "000000.png"))
    assert written.shape == expected.shape and np.mean(written == expected) >= 0.99

    calls.clear()
    monkeypatch.setattr(auto, "median_ms", lambda *a, **k: pytest.fail("a cached choice is not measured again"))
    assert exit_code(argv) == 0  # again: the cached choice, the same fingerprint, every input skipped
    lines = _auto_lines(capsys.readouterr().out)
    assert len(calls) == 1 and len(lines) == 1 and "cached" in lines[0] and lines[0].split()[3] == chosen, lines
    assert json.loads((out / "run.json").read_text())["backend_auto"]["cached"] is True


def test_batch_of_an_export_folder_with_a_named_backend_measures_nothing(export_folder, archive, tmp_path,
                                                                         monkeypatch, capsys):
    calls = _spy(monkeypatch)
    out = tmp_path / "named"
    assert exit_code(["batch", str(archive / "case_1"), "--model", str(export_folder), "--backend", "onnxruntime",
                      "--out", str(out)]) == 0
    assert calls == [] and _auto_lines(capsys.readouterr().out) == []
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "onnxruntime-cpu" and run["backend_auto"] is None  # the alias's registry name


def test_the_library_resolves_auto_once_and_no_worker_chooses(export_folder, archive, tmp_path, monkeypatch):
    from surgenet.backends import AUTO
    from surgenet.batch import BatchJob, ModelSpec, run_job
    from surgenet.batch.spec import BatchModel
    from surgenet.exceptions import InputError

    monkeypatch.setenv("SURGENET_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(str(export_folder), "segmentation")
    assert spec.backend == AUTO  # the default of an export folder
    with pytest.raises(InputError, match="chosen once by the job"):
        BatchModel(spec)
    calls = _spy(monkeypatch)
    seen: list = []
    report = run_job(BatchJob(str(archive), spec, str(tmp_path / "lib")), progress=False, on_choice=seen.append)
    assert len(calls) == 1 and len(seen) == 1 and report.backend == seen[0].backend == report.choice.backend
    assert sorted(report.done) == ["case_0", "case_1", "case_2"]


def test_batch_mistakes_with_an_export_folder_are_one_line(export_folder, archive, tmp_path, capsys):
    base = ["batch", str(archive), "--model", str(export_folder), "--out", str(tmp_path / "o")]
    for extra, message in ((["--backend", "no-such-backend"], "invalid choice: 'no-such-backend'"),
                           (["--backend", "torch-compile-fp32"], "is an exported model (no PyTorch weights)"),
                           (["--backend", "openvino-int8"], "model.int8.xml, which is not there"),
                           (["--backend", "onnxruntime", "--rebenchmark"], "--rebenchmark go with --backend auto"),
                           (["--task", "cvs"], "was exported for segmentation, not cvs"),
                           (["--num-classes", "3"], "drop --num-classes")):
        assert exit_code(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], (extra, err)
    assert exit_code(["batch", str(archive), "--model", str(export_folder), "--backend", "nonsense",
                      "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "auto" in err and "onnxruntime-cpu" in err and "openvino-bf16" in err  # the valid names are named
    assert exit_code(["embed", str(archive), "--model", str(export_folder), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "embed outputs backbone embeddings" in err[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()  # refused before anything is written


@pytest.mark.slow
def test_ray_workers_open_the_backend_the_driver_chose(export_folder, archive, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'surgenet[ray]'")
    from surgenet.batch import BatchJob, ModelSpec, run_job

    monkeypatch.setenv("SURGENET_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(str(export_folder), "segmentation")
    local = run_job(BatchJob(str(archive), spec, str(tmp_path / "local")), progress=False)
    calls = _spy(monkeypatch)
    remote = run_job(BatchJob(str(archive), spec, str(tmp_path / "ray"), batch_size=2), engine="ray", workers=1,
                     progress=False)
    assert len(calls) == 1 and calls[0]["threads"] == 1  # measured in the driver, as the actors run (one thread)
    assert sorted(remote.done) == sorted(local.done)
    table = pq.read_table(tmp_path / "ray" / "predictions.parquet")
    assert json.loads(table.schema.metadata[b"surgenet"])["backend"] == remote.backend == remote.choice.backend
    for item in ("case_0", "case_1"):  # both backends agree with FP32: their masks agree too
        for a, b in zip(sorted((tmp_path / "local" / item / "masks").iterdir()),
                        sorted((tmp_path / "ray" / item / "masks").iterdir())):
            assert np.mean(np.asarray(Image.open(a)) == np.asarray(Image.open(b))) >= 0.98
