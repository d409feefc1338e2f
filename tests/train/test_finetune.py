"""Fine-tuning the task heads on small synthetic datasets in the documented formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.train.finetune import FinetuneConfig, finetune
from tests.helpers.killed import finetune_killed_saving_epoch

SIZE = 32  # tiny frames: the FPN head learns the disc in a few steps on a frozen backbone


def disc_dataset(root: Path, n: int, seed: int) -> Path:
    """Dark noisy frames with one bright disc; mask 1 on the disc, 0 elsewhere, 255 on a border."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        cy, cx, r = rng.integers(10, 23), rng.integers(10, 23), rng.integers(5, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image = (rng.random((SIZE, SIZE, 3)) * 70).astype(np.uint8)
        image[disc] = (200 + rng.random((int(disc.sum()), 3)) * 55).astype(np.uint8)
        mask = disc.astype(np.uint8)
        mask[0, :] = 255  # ignored pixels must not count
        Image.fromarray(image).save(root / "images" / f"f{i:02d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"f{i:02d}.png")
    return root


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_segmentation_fine_tuning_learns(tmp_path):
    import surgenet

    train = disc_dataset(tmp_path / "train", 16, 0)
    val = disc_dataset(tmp_path / "val", 6, 1)
    # A frozen random backbone (backbone_lr=0): only the FPN head trains, so a few steps suffice.
    cfg = FinetuneConfig(task="segmentation", model="surgenetxl-caformer", pretrained=False, num_classes=2,
                         train=str(train), val=str(val), image_size=SIZE, epochs=6, batch_size=4, lr=1e-2,
                         backbone_lr=0.0, num_workers=0)
    torch.manual_seed(0)
    finetune(cfg, tmp_path / "out")
    log = _log(tmp_path / "out")
    assert len(log) >= 4 and min(r["train_loss"] for r in log[-2:]) < 0.5 * log[0]["train_loss"]
    model = surgenet.load_model(tmp_path / "out" / "best")
    assert model.num_classes == 2 and model.config["input_size"] == [3, SIZE, SIZE]
    # Disc Dice of the saved model on the validation frames, computed here. Chance: all background
    # scores 0, all disc 2p / (1 + p) with p the disc's share of the frame (about 0.15 here): 0.26.
    transform = surgenet.create_transform(model)
    overlap = total = 0
    for image in sorted((val / "images").glob("*.jpg")):
        with torch.no_grad():
            pred = model(transform(image)[None]).argmax(1)[0].numpy()[1:] == 1  # row 0 is ignored
        target = np.asarray(Image.open(val / "masks" / f"{image.stem}.png"))[1:] == 1
        overlap, total = overlap + (pred & target).sum(), total + pred.sum() + target.sum()
    assert 2 * overlap / total > 0.6


def _frames(folder: Path, levels) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, level in enumerate(levels):
        Image.fromarray(np.full((24, 24, 3), level, np.uint8)).save(folder / f"{i:03d}.png")
        names.append(f"{folder.name}/{i:03d}.png")
    return names


def _phase_accuracy(model, data: Path) -> float:
    """Share of frames whose phase the model predicts, over the per-video CSVs in ``data``."""
    import csv

    import surgenet

    transform = surgenet.create_transform(model)
    hits = frames = 0
    for table in sorted(data.glob("*.csv")):
        rows = list(csv.DictReader(table.open()))
        clip = torch.stack([transform(data / r["frame"]) for r in rows])
        with torch.no_grad():
            pred = model(clip).argmax(-1)
        hits += sum(model.class_names[int(p)] in (r["phase"], f"phase_{r['phase']}") for p, r in zip(pred, rows))
        frames += len(rows)
    return hits / frames


def test_phase_fine_tuning_on_cached_features_and_resume(tmp_path):
    import surgenet

    data = tmp_path / "phase"
    for video in ("v1", "v2"):
        phases = [0] * 6 + [1] * 6 + [2] * 6
        names = _frames(data / video, [40 + 80 * p for p in phases])
        rows = "\n".join(f"{n},{p}" for n, p in zip(names, phases))
        (data / f"{video}.csv").write_text(f"frame,phase\n{rows}\n")
    cfg = FinetuneConfig(task="phase", model="surgenetxl-caformer", pretrained=False, num_classes=3,
                         train=str(data), val=str(data), image_size=32, epochs=2, lr=1e-2, num_workers=0,
                         model_kwargs={"num_layers": 3, "channels": 16, "dropout": 0.0})
    finetune(cfg, tmp_path / "out")
    assert (tmp_path / "out" / "features" / "train.safetensors").is_file()
    cfg.epochs = 6
    finetune(cfg, tmp_path / "out", resume=True)  # four more epochs from last.pth
    log = _log(tmp_path / "out")
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    model = surgenet.load_model(tmp_path / "out" / "best")
    assert model.task == "phase" and model.num_classes == 3
    # Each phase has its own grey level, so the phases are separable; chance is 1/3.
    assert _phase_accuracy(model, data) > 0.9


def _phase_data(root: Path) -> Path:
    for video in ("v1", "v2"):
        phases = [0] * 4 + [1] * 4 + [2] * 4
        names = _frames(root / video, [40 + 80 * p for p in phases])
        rows = "\n".join(f"{n},{p}" for n, p in zip(names, phases))
        (root / f"{video}.csv").write_text(f"frame,phase\n{rows}\n")
    return root


def _random_backbone_weights(folder: Path, seed: int) -> Path:
    """A randomly initialised CAFormer-S18 (the SurgeNetXL network) in the zoo's format."""
    from surgenet.zoo.backbones import create_network
    from surgenet.train.teacher_export import export_teacher

    torch.manual_seed(seed)
    return export_teacher(create_network("caformer_s18_surgenet"), "surgenetxl-caformer", folder)


def _expected_embeddings(weights: Path, frames: list[Path]) -> torch.Tensor:
    """Each frame's pooled embedding by the backbone at ``weights``, computed here, apart from fine-tuning."""
    import surgenet
    from surgenet.zoo.registry import get_entry
    from surgenet.transforms import ImageTransform

    entry = get_entry("surgenetxl-caformer")
    transform = ImageTransform((32, 32), entry.mean, entry.std)
    backbone = surgenet.load_backbone("surgenetxl-caformer", weights=weights).eval()
    with torch.no_grad():
        return backbone.forward_embedding(torch.stack([transform(f) for f in frames]))


def test_phase_feature_cache_follows_the_backbone(tmp_path, caplog):
    from safetensors.torch import load_file

    data = _phase_data(tmp_path / "phase")
    frames = {v: sorted((data / v).glob("*.png")) for v in ("v1", "v2")}
    first, second = _random_backbone_weights(tmp_path / "a", 1), _random_backbone_weights(tmp_path / "b", 2)
    out, cache = tmp_path / "out", tmp_path / "out" / "features" / "train.safetensors"

    def run(weights: Path) -> None:
        cfg = FinetuneConfig(task="phase", model="surgenetxl-caformer", weights=str(weights), num_classes=3,
                             train=str(data), val=str(data), image_size=32, epochs=1, num_workers=0,
                             model_kwargs={"num_layers": 2, "channels": 8})
        caplog.clear()
        with caplog.at_level("INFO", logger="surgenet.train.finetune_tasks"):
            finetune(cfg, out)

    for weights in (first, second):  # the second run writes into the first one's --out
        run(weights)
        assert "computing" in caplog.text and "reusing" not in caplog.text
        cached = load_file(str(cache))
        for video, paths in frames.items():
            torch.testing.assert_close(cached[video], _expected_embeddings(weights, paths), atol=1e-5, rtol=1e-4)
    assert "weights" in caplog.text  # the log names what changed
    stamp = cache.stat().st_mtime_ns
    run(second)  # the same backbone again: the cache is reused as it is
    assert "reusing" in caplog.text and "computing" not in caplog.text and cache.stat().st_mtime_ns == stamp


def test_phase_end_to_end_from_the_command_line(tmp_path, capsys):
    from surgenet.train.cli import main

    data = tmp_path / "phase"
    names = _frames(data / "v1", [40, 40, 40, 200, 200, 200])
    rows = "\n".join(f"{n},{'cut' if i < 3 else 'clip'}" for i, n in enumerate(names))
    (data / "v1.csv").write_text(f"frame,phase\n{rows}\n")
    code = main(["finetune", "--task", "phase", "--model", "surgenetxl-caformer", "--no-pretrained",
                 "--train", str(data), "--val", str(data), "--out", str(tmp_path / "out"), "--class-names",
                 "cut,clip", "--end-to-end", "--clip-length", "4", "--image-size", "32", "--epochs", "1",
                 "--batch-size", "2", "--num-workers", "0", "--set", "model_kwargs={num_layers: 2, channels: 8}"])
    assert code == 0
    assert "val_accuracy" in capsys.readouterr().out
    assert not (tmp_path / "out" / "features").exists()  # end to end: no feature cache


def test_resume_after_a_kill_logs_each_epoch_once(tmp_path, monkeypatch):
    data = _phase_data(tmp_path / "phase")
    cfg = FinetuneConfig(task="phase", model="surgenetxl-caformer", pretrained=False, num_classes=3,
                         train=str(data), val=str(data), image_size=32, epochs=3, num_workers=0,
                         model_kwargs={"num_layers": 2, "channels": 8})
    finetune_killed_saving_epoch(cfg, tmp_path / "out", 2, monkeypatch)  # epoch 2 logged, last.pth at epoch 1
    log_path = tmp_path / "out" / "log.jsonl"
    assert [json.loads(line)["epoch"] for line in log_path.read_text().splitlines()] == [1, 2]
    finetune(cfg, tmp_path / "out", resume=True)
    assert [json.loads(line)["epoch"] for line in log_path.read_text().splitlines()] == [1, 2, 3]


def test_cvs_fine_tuning_learns_the_criteria(tmp_path):
    import surgenet

    data = tmp_path / "cvs"
    names = _frames(data / "img", [30, 220] * 4)
    # c1 is met on the bright frames, c3 on the dark ones; c2 is never met.
    rows = "\n".join(f"{n},{int(i % 2)},0,{int(i % 2 == 0)}" for i, n in enumerate(names))
    (data / "labels.csv").write_text(f"image,c1,c2,c3\n{rows}\n")
    cfg = FinetuneConfig(task="cvs", model="surgenetxl-caformer", pretrained=False, train=str(data / "labels.csv"),
                         val=str(data / "labels.csv"), image_size=32, epochs=4, batch_size=4, lr=1e-2,
                         backbone_lr=0.0, num_workers=0)
    finetune(cfg, tmp_path / "out")
    model = surgenet.load_model(tmp_path / "out" / "best")
    transform = surgenet.create_transform(model)
    with torch.no_grad():
        probs = model.predict_proba(torch.stack([transform(data / n) for n in names])).numpy()
    bright = np.arange(len(names)) % 2 == 1
    # Chance ranks the frames at random; here every bright frame must score above every dark one on
    # c1, and below on c3; c2, never met, must fall below one half.
    assert probs[bright, 0].min() > probs[~bright, 0].max()
    assert probs[bright, 2].max() < probs[~bright, 2].min()
    assert probs[:, 1].max() < 0.5


def test_finetune_help_documents_the_formats(capsys):
    from surgenet.train.cli import main

    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = capsys.readouterr().out
    assert "masks/<stem>.png" in text and "frame,phase" in text and "image,c1,c2,c3" in text
