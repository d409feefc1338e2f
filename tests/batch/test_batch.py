"""Archive jobs (`surgenet batch` / `surgenet embed`): inputs, sampling, outputs, failures, resume,
near duplicates, and the Ray engine against the local one on the same archive."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av", reason="archive jobs decode videos with PyAV: pip install 'surgenet[video]'")
pq = pytest.importorskip("pyarrow.parquet", reason="archive jobs write Parquet: pip install 'surgenet[video]'")

import surgenet  # noqa: E402
from surgenet.batch import BatchJob, ModelSpec, discover_inputs, run_job  # noqa: E402
from surgenet.batch.duplicates import near_duplicate_pairs  # noqa: E402
from surgenet.batch.decode import sampled_video  # noqa: E402
from surgenet.exceptions import InputError  # noqa: E402
from tests.helpers.cli import exit_code  # noqa: E402
from tests.helpers.clips import write_clip  # noqa: E402
from tests.helpers.paths import SHARED_DATA

ZOO = "surgenetxl-caformer"
SHARED = SHARED_DATA


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Two short clips (one in a sub-folder), a folder of frames (real ones when ../shared/data is
    there), a corrupt video and a file that is neither."""
    root = tmp_path_factory.mktemp("archive")
    write_clip(root / "case_a.mp4", 20)  # 2 s at 10 fps
    write_clip(root / "day2" / "case_b.mp4", 12, seed=1)
    frames = root / "frames_c"
    frames.mkdir()
    real = sorted((SHARED / "cholect50" / "videos" / "VID73").glob("*.jpg"))[:3]
    for i in range(3):
        if real:
            shutil.copy(real[i], frames / f"{i:06d}.jpg")
        else:
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(
                frames / f"{i:06d}.png")
    (root / "broken.mp4").write_bytes(b"not a video at all" * 64)
    (root / "notes.txt").write_text("ignored")
    return root


@pytest.fixture(scope="module")
def cvs_model(tmp_path_factory) -> Path:
    """A saved CVS model: the same weights in every process and engine."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "cvs"
    surgenet.load_model(ZOO, task="cvs", pretrained=False).save_pretrained(folder)
    return folder


def test_inputs_of_a_tree_and_of_a_manifest(archive, tmp_path):
    found = {item.id: item for item in discover_inputs(archive)}
    assert set(found) == {"case_a", "day2__case_b", "frames_c", "broken"}
    assert found["frames_c"].kind == "frames" and found["case_a"].kind == "video"
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path,id\n{archive / 'case_a.mp4'},first\n{archive / 'frames_c'},\n")
    assert [(i.id, i.kind) for i in discover_inputs(manifest)] == [("first", "video"), (str(archive / "frames_c")
                                                                                      .replace("/", "__").strip("_"), "frames")]
    bad = tmp_path / "bad.csv"
    bad.write_text("path\nmissing.mp4\n\nnotes.txt\n")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"line 2: missing.mp4 does not exist.*line 4: notes.txt is neither"):
        discover_inputs(bad)
    with pytest.raises(InputError, match="'path' column"):
        (tmp_path / "nocol.csv").write_text("file\na.mp4\n")
        discover_inputs(tmp_path / "nocol.csv")


def test_sampling_by_time_from_the_stream_start(tmp_path):
    clip = tmp_path / "c.mp4"
    write_clip(clip, 25, fps=10)
    picked = [(index, round(t, 3)) for index, t, _ in sampled_video(str(clip), fps=3)]
    # 3 fps from 10 fps: the first frame at or after each multiple of 1/3 s.
    expected = [(int(np.ceil(k / 3 * 10 - 1e-6)), round(np.ceil(k / 3 * 10 - 1e-6) / 10, 3)) for k in range(8)]
    assert picked == expected
    assert [i for i, _, _ in sampled_video(str(clip), fps=None)] == list(range(25))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_local_job_outputs_failures_and_probabilities(archive, cvs_model, tmp_path):
    out = tmp_path / "out"
    report = run_job(BatchJob(str(archive), ModelSpec(str(cvs_model), "cvs"), str(out), fps=2, batch_size=4),
                     progress=False)
    assert sorted(report.done) == ["case_a", "day2__case_b", "frames_c"]
    assert list(report.failed) == ["broken"]
    failures = _read_csv(out / "failures.csv")
    assert [f["video"] for f in failures] == ["broken"] and "broken.mp4" in failures[0]["error"]
    table = pq.read_table(out / "predictions.parquet")
    # 2 s at 2 fps -> 4 frames; 1.2 s -> 3 frames; 3 images.
    assert table.num_rows == 4 + 3 + 3
    assert table.column("frame").to_pylist()[:4] == [0, 5, 10, 15]
    meta = json.loads(table.schema.metadata[b"surgenet"])
    assert meta["model"] == str(cvs_model) and meta["task"] == "cvs" and meta["preprocessing"]["size"] == [256, 256]
    rows = _read_csv(out / "frames_c" / "predictions.csv")
    assert len(rows) == 3 and rows[0]["source"].endswith("000000." + ("jpg" if rows[0]["source"].endswith("jpg") else "png"))
    # Independently: the model on the first image of the frame folder.
    model = surgenet.load_model(cvs_model)
    first = sorted((archive / "frames_c").iterdir())[0]
    x = surgenet.create_transform(model)(np.asarray(Image.open(first).convert("RGB")))[None]
    with torch.no_grad():
        expected = torch.sigmoid(model(x))[0].numpy()
    got = [float(rows[0][f"p_{n}"]) for n in model.class_names]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_killed_job_resumes_with_the_rest_only(archive, cvs_model, tmp_path):
    out = tmp_path / "out"
    job = BatchJob(str(archive), ModelSpec(str(cvs_model), "cvs"), str(out), fps=1)

    def stop_after_first(item_id: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(job, progress=False, after_input=stop_after_first)
    first = json.loads((out / "done.json").read_text())
    assert len(first) == 1
    report = run_job(job, progress=False)
    assert report.skipped == list(first)
    assert sorted(report.done + report.skipped) == ["case_a", "day2__case_b", "frames_c"]
    assert pq.read_table(out / "predictions.parquet").num_rows == 2 + 2 + 3  # 1 fps: 2 s -> 2, 1.2 s -> 2
    again = run_job(job, progress=False)  # nothing left but the broken input, which is tried again
    assert again.done == [] and list(again.failed) == ["broken"]


def test_segmentation_masks_at_each_frame_size(tmp_path):
    write_clip(tmp_path / "in" / "v.mp4", 6, fps=2, size=(40, 72))
    out = tmp_path / "out"
    spec = ModelSpec(ZOO, "segmentation", num_classes=3, pretrained=False)
    run_job(BatchJob(str(tmp_path / "in"), spec, str(out)), progress=False)
    masks = sorted((out / "v" / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"frame_{i:06d}.png" for i in range(6)]
    assert all(Image.open(m).size == (72, 40) for m in masks)
    table = pq.read_table(out / "predictions.parquet").to_pylist()
    assert table[0]["prediction"] == "v/masks/frame_000000.png"
    shares = np.asarray(table[0]["probabilities"])
    counts = np.bincount(np.asarray(Image.open(masks[0])).ravel(), minlength=3) / (40 * 72)
    np.testing.assert_allclose(shares, counts, atol=1e-6)


def test_near_duplicate_pairs_by_hand():
    e = np.array([[1, 0, 0], [2, 0, 0], [0, 1, 0], [0.6, 0.8, 0]], dtype=np.float32)
    assert near_duplicate_pairs(e, 0.99) == [(0, 1, pytest.approx(1.0))]
    pairs = near_duplicate_pairs(e, 0.5)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (2, 3), (0, 3), (1, 3)]  # 1.0, 0.8, 0.6, 0.6
    assert pairs[1][2] == pytest.approx(0.8) and pairs[3][2] == pytest.approx(0.6)


def test_embed_finds_planted_duplicates(tmp_path):
    folder = tmp_path / "in" / "frames"
    folder.mkdir(parents=True)
    patterns = [np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1)),  # gradient
                np.kron((np.indices((6, 8)).sum(0) % 2) * 255, np.ones((8, 8))).astype(np.uint8),  # checkerboard
                np.full((48, 64), 30, np.uint8)]
    for i, p in enumerate(patterns):
        Image.fromarray(np.stack([p, np.flipud(p), 255 - p], -1)).save(folder / f"{i}.png")
    shutil.copy(folder / "1.png", folder / "3.png")  # planted: frame 3 is frame 1
    out = tmp_path / "out"
    report = run_job(BatchJob(str(tmp_path / "in"), ModelSpec(ZOO, "embed", pretrained=False), str(out),
                              dtype="float32", near_duplicates=0.9999), progress=False)
    table = pq.read_table(out / "embeddings.parquet")
    assert table.num_rows == 4 and len(table.column("embedding")[0]) == 512
    assert json.loads(table.schema.metadata[b"surgenet"])["model"] == ZOO
    pairs = _read_csv(report.duplicates)
    assert [(p["frame_a"], p["frame_b"]) for p in pairs] == [("1", "3")]


@pytest.mark.slow
def test_ray_engine_gives_the_local_table(archive, cvs_model, tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'surgenet[ray]'")
    local = run_job(BatchJob(str(archive), ModelSpec(str(cvs_model), "cvs"), str(tmp_path / "local"), fps=2),
                    progress=False)
    remote = run_job(BatchJob(str(archive), ModelSpec(str(cvs_model), "cvs"), str(tmp_path / "ray"), fps=2,
                              batch_size=3), engine="ray", workers=1, progress=False)
    assert sorted(remote.done) == sorted(local.done) and list(remote.failed) == list(local.failed)
    a = pq.read_table(tmp_path / "local" / "predictions.parquet").to_pylist()
    b = pq.read_table(tmp_path / "ray" / "predictions.parquet").to_pylist()
    assert [(r["video"], r["frame"], r["prediction"]) for r in a] == [(r["video"], r["frame"], r["prediction"]) for r in b]
    np.testing.assert_allclose([r["probabilities"] for r in a], [r["probabilities"] for r in b], atol=1e-4)


def test_cli_mistakes_are_one_line(archive, tmp_path, capsys):
    for argv, message in ((["batch", str(archive), "--model", ZOO, "--out", str(tmp_path / "o"), "--no-pretrained"],
                           "is a zoo backbone: pass --task"),
                          (["batch", str(archive), "--model", ZOO, "--task", "cvs", "--out", str(tmp_path / "o"),
                            "--fps", "0"], "--fps"),
                          (["embed", str(archive), "--model", ZOO, "--out", str(tmp_path / "o"), "--address", "auto"],
                           "--engine ray")):
        assert exit_code(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_phase_equals_the_online_predictor_on_the_same_video(tmp_path):
    write_clip(tmp_path / "in" / "v.mp4", 6, fps=5)
    torch.manual_seed(0)
    surgenet.load_model(ZOO, task="phase", num_classes=4, pretrained=False).save_pretrained(tmp_path / "phase")
    run_job(BatchJob(str(tmp_path / "in"), ModelSpec(str(tmp_path / "phase"), "phase"), str(tmp_path / "out")),
            progress=False)
    rows = _read_csv(tmp_path / "out" / "v" / "predictions.csv")
    online = list(surgenet.Predictor(surgenet.load_model(tmp_path / "phase"), batch_size=1)
                  .predict_video(tmp_path / "in" / "v.mp4"))
    assert [int(r["frame"]) for r in rows] == [r.index for r in online] == list(range(6))
    assert [r["prediction"] for r in rows] == [r.name for r in online]
    names = online[0].class_names
    np.testing.assert_allclose([[float(r[f"p_{n}"]) for n in names] for r in rows],
                               [r.probabilities for r in online], atol=1e-5)


def test_a_registry_backend_gives_the_eager_table_and_cuda_ones_refuse_without_a_gpu(archive, cvs_model, tmp_path,
                                                                                     capsys, monkeypatch):
    tables = {}
    for backend in ("torch-eager-fp32", "torch-channels-last-fp32"):
        spec = ModelSpec(str(cvs_model), "cvs", backend=backend)
        run_job(BatchJob(str(archive / "frames_c"), spec, str(tmp_path / backend), batch_size=2), progress=False)
        tables[backend] = pq.read_table(tmp_path / backend / "predictions.parquet")
    eager, other = (np.asarray(t.column("probabilities").to_pylist(), dtype=np.float32) for t in tables.values())
    assert eager.shape == (3, 3)
    np.testing.assert_allclose(other, eager, atol=1e-4)  # the same FP32 network in another memory format
    # the reference keeps the fingerprint of jobs run before backends could be chosen
    assert ModelSpec(str(cvs_model), "cvs").fingerprint() != ModelSpec(str(cvs_model), "cvs",
                                                                       backend="torch-channels-last-fp32").fingerprint()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert exit_code(["batch", str(archive), "--model", str(cvs_model), "--backend", "torch-cuda-graphs-fp16",
                      "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs an NVIDIA GPU with CUDA" in err[0], err


def test_batch_reads_the_task_of_a_hub_model_from_its_cached_config(hf_cache, tmp_path):
    import json

    from surgenet.cli.batch import saved_task

    hf_cache.add("someone/cvs-model", "config.json", json.dumps({"task": "cvs", "num_classes": 3}).encode())
    assert saved_task("someone/cvs-model") == "cvs"
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"task": "phase"}))
    assert saved_task(str(folder)) == "phase"


def test_batch_with_an_uncached_hub_model_offline_is_one_line(hf_cache, tmp_path, capsys):
    from surgenet.cli import main

    archive = tmp_path / "videos"
    archive.mkdir()
    try:
        code = main(["batch", str(archive), "--model", "someone/not-cached", "--out", str(tmp_path / "out")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "someone/not-cached" in err[0] and "cache" in err[0], err
