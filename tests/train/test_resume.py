"""``--resume`` with settings that differ from the saved run: one line and exit 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from surgenet.exceptions import InputError
from surgenet.train.finetune import RESUMABLE_CHANGES, FinetuneConfig
from surgenet.train.resume import check_resumed_settings
from tests.train.test_finetune import SIZE, disc_dataset


def _train_cli(capsys, argv: list[str]) -> tuple[int, str]:
    from surgenet.train.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code)
    return code, capsys.readouterr().err.strip()


def _refused(capsys, argv: list[str], *words: str) -> None:
    code, err = _train_cli(capsys, argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def _epochs(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_each_differing_setting_is_named_with_both_values():
    saved = {"task": "segmentation", "num_classes": 2, "image_size": 32, "epochs": 1, "crop_scale": [0.5, 1.0],
             "model_kwargs": {}, "dropped_by_a_later_version": 1}
    now = FinetuneConfig(task="segmentation", num_classes=3, image_size=48, epochs=5)
    with pytest.raises(InputError) as info:
        check_resumed_settings(saved, now, RESUMABLE_CHANGES)
    message = str(info.value)
    assert "num_classes: 2 -> 3" in message and "image_size: 32 -> 48" in message
    assert "epochs" not in message and "crop_scale" not in message  # allowed; a tuple equals its saved list
    assert "new --out" in message
    check_resumed_settings({"num_classes": 3, "image_size": 48, "epochs": 1}, now, RESUMABLE_CHANGES)


def test_sections_are_compared_key_by_key_and_may_be_allowed_whole():
    from surgenet.train.config import PretrainConfig, to_dict

    saved = to_dict(PretrainConfig())
    changed = PretrainConfig()
    changed.optim.lr, changed.eval.every_epochs = changed.optim.lr * 2, 7
    with pytest.raises(InputError, match=r"optim\.lr: "):
        check_resumed_settings(saved, changed, ("eval.",))
    changed.optim.lr = PretrainConfig().optim.lr
    check_resumed_settings(saved, changed, ("eval.",))


def test_finetune_resume_with_other_classes_or_size_is_refused(tmp_path, capsys):
    data = disc_dataset(tmp_path / "data", 4, 0)
    out = tmp_path / "out"
    base = ["finetune", "--task", "segmentation", "--model", "surgenetxl-caformer", "--no-pretrained",
            "--train", str(data), "--out", str(out), "--image-size", str(SIZE), "--batch-size", "4",
            "--num-workers", "0"]
    code, err = _train_cli(capsys, base + ["--num-classes", "2", "--epochs", "1"])
    assert code == 0, err
    _refused(capsys, base + ["--num-classes", "3", "--epochs", "2", "--resume"], "num_classes: 2 -> 3", "--out")
    _refused(capsys, base + ["--num-classes", "2", "--image-size", "64", "--resume"], "image_size: 32 -> 64")
    assert _epochs(out) == [1]  # nothing ran
    code, err = _train_cli(capsys, base + ["--num-classes", "2", "--epochs", "2", "--resume"])
    assert code == 0, err  # more epochs: the same run, continued
    assert _epochs(out) == [1, 2]


def test_distill_resume_with_another_image_size_is_refused(tmp_path, capsys):
    import surgenet

    teacher = tmp_path / "teacher"
    surgenet.load_model("resnet18", task="segmentation", num_classes=2, pretrained=False).save_pretrained(teacher)
    frames = disc_dataset(tmp_path / "data", 4, 0) / "images"
    out = tmp_path / "out"
    base = ["distill", "--teacher", str(teacher), "--student", "resnet18", "--data", str(frames),
            "--out", str(out), "--batch-size", "4", "--num-workers", "0"]
    code, err = _train_cli(capsys, base + ["--image-size", str(SIZE), "--epochs", "1"])
    assert code == 0, err
    _refused(capsys, base + ["--image-size", "64", "--epochs", "1", "--resume"], "image_size: 32 -> 64")
    _refused(capsys, base + ["--image-size", str(SIZE), "--student", "resnet34", "--resume"],
             "student: 'resnet18' -> 'resnet34'")
    code, err = _train_cli(capsys, base + ["--image-size", str(SIZE), "--epochs", "2", "--resume"])
    assert code == 0, err
    assert _epochs(out) == [1, 2]
