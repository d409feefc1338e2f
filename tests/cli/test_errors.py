"""User mistakes on the command lines: exit code 2, one line on stderr that names the problem and
the fix, no traceback, and no model built (every check runs before the weights are touched).

``timm.create_model`` is replaced by a function that fails the test: every surgenet network is
built through it, so a mistake caught after a model was built shows up as a test failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import surgenet
from surgenet.console import CommandParser, run_command
from surgenet.cli import main as surgenet_main
from surgenet.devices import resolve_device
from surgenet.exceptions import InputError, UnknownModelError
from surgenet.train.cli import main as train_main
from tests.helpers.paths import REPO

NO_GPU = not torch.cuda.is_available()
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="checks the message on a machine without CUDA")


@pytest.fixture(autouse=True)
def no_model_building(monkeypatch):
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError("a network was built before the mistake was reported")

    monkeypatch.setattr(timm, "create_model", refuse)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "frame.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


def run(main, argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of a command, whether it returned or exited (argparse)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------- surgenet predict
def _predict(image, *extra) -> list:
    return ["predict", image, "--task", "segmentation", "--num-classes", "2", "--no-pretrained", *extra]


@pytest.mark.parametrize("model,fragment", [
    ("./nosuch", "there is no folder ./nosuch"),
    ("my-seg/", "there is no folder my-seg/"),
    ("runs/seg/best", "there is no folder runs/seg/best"),
    ("nosuch", "unknown model 'nosuch'"),
    ("owner/bad name", "neither a folder, a zoo name nor a valid Hub repo id"),
])
def test_predict_model_that_is_neither_folder_nor_zoo_name_nor_repo_id(image, tmp_path, capsys, model, fragment):
    code, err = run(surgenet_main, _predict(image, "--model", model, "--out", tmp_path / "out"), capsys)
    assert_one_line(code, err, "argument --model", fragment)
    assert "HFValidationError" not in err


def test_predict_model_that_is_a_weights_file(image, tmp_path, capsys):
    weights = tmp_path / "best.pth"
    weights.write_bytes(b"x")
    code, err = run(surgenet_main, _predict(image, "--model", weights, "--out", tmp_path / "out"), capsys)
    assert_one_line(code, err, "is a file, not a model folder", "--weights")


def test_predict_hub_repo_id_offline_and_not_cached(image, tmp_path, capsys):
    # a valid repo id reaches huggingface_hub, which is offline in the tests: one line, no model built
    code, err = run(surgenet_main, _predict(image, "--model", "someone/my-seg", "--out", tmp_path / "out"), capsys)
    assert_one_line(code, err, "someone/my-seg", "cache")


@pytest.mark.parametrize("device,fragment", [
    ("gpu", "did you mean 'cuda'"),
    ("cuda:x", "unknown device 'cuda:x'"),
    pytest.param("cuda", "no CUDA GPU is visible", marks=needs_no_gpu),
])
def test_predict_device(image, tmp_path, capsys, device, fragment):
    argv = _predict(image, "--model", "surgenet-caformer", "--out", tmp_path / "out", "--device", device)
    code, err = run(surgenet_main, argv, capsys)
    assert_one_line(code, err, "argument --device", fragment)


@pytest.mark.parametrize("option,value,fragment", [
    ("--stride", "0", "must be >= 1, got 0"),
    ("--batch-size", "-1", "must be >= 1"),
    ("--num-classes", "two", "expected a whole number"),
    ("--threshold", "1.5", "between 0 and 1"),
    ("--alpha", "nan", "expected a number"),
])
def test_predict_bad_numbers(image, tmp_path, capsys, option, value, fragment):
    argv = [*_predict(image, "--model", "surgenet-caformer", "--out", tmp_path / "out"), option, value]
    code, err = run(surgenet_main, argv, capsys)
    assert_one_line(code, err, f"argument {option}", fragment)


def test_predict_keyframe_options(image, tmp_path, capsys):
    base = _predict(image.parent, "--model", "surgenet-caformer", "--out", tmp_path / "out")
    code, err = run(surgenet_main, [*base, "--keyframe-every", "0"], capsys)
    assert_one_line(code, err, "argument --keyframe-every", "must be >= 1")
    code, err = run(surgenet_main, [*base, "--keyframe-every", "5", "--stride", "2"], capsys)
    assert_one_line(code, err, "--keyframe-every needs consecutive frames")
    code, err = run(surgenet_main, [*_predict(image, "--model", "surgenet-caformer", "--out", tmp_path / "out"),
                                    "--keyframe-every", "5"], capsys)
    assert_one_line(code, err, "--keyframe-every needs consecutive frames of a video or a folder")


def test_predict_out_naming_an_existing_file(image, tmp_path, capsys):
    existing = tmp_path / "results.csv"
    existing.write_text("a,b\n")
    code, err = run(surgenet_main, _predict(image, "--model", "surgenet-caformer", "--out", existing), capsys)
    assert_one_line(code, err, "argument --out", "is an existing file")
    assert existing.read_text() == "a,b\n"


def test_predict_missing_input(tmp_path, capsys):
    argv = _predict(tmp_path / "nothing.mp4", "--model", "surgenet-caformer", "--out", tmp_path / "out")
    code, err = run(surgenet_main, argv, capsys)
    assert_one_line(code, err, "nothing.mp4 does not exist")


@pytest.mark.parametrize("content,fragment", [
    (b"not a png", "Check that the file is a complete PNG/JPEG"),
    (None, "Check that the file is a complete PNG/JPEG"),  # a real PNG cut in half
])
def test_predict_unreadable_single_image_before_the_model(tmp_path, capsys, content, fragment):
    broken = tmp_path / "broken.png"
    if content is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(broken)
        content = broken.read_bytes()[: broken.stat().st_size // 2]
    broken.write_bytes(content)
    code, err = run(surgenet_main, _predict(broken, "--model", "surgenet-caformer", "--out", tmp_path / "out"), capsys)
    assert_one_line(code, err, "broken.png", fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra,fragment", [
    ([], "pass --task (segmentation, phase, cvs, tools) and --num-classes"),
    (["--task", "segmentation"], "with --task segmentation needs --num-classes N"),
])
def test_predict_zoo_name_without_task_or_classes_speaks_in_flags(image, tmp_path, capsys, extra, fragment):
    argv = ["predict", image, "--model", "surgenet-caformer", "--no-pretrained", *extra, "--out", tmp_path / "out"]
    code, err = run(surgenet_main, argv, capsys)
    assert_one_line(code, err, fragment)
    assert "task=" not in err and "num_classes" not in err


@pytest.mark.parametrize("command,extra,fragment", [
    ("batch", [], "pass --task (segmentation, phase, cvs, tools)"),
    ("batch", ["--task", "phase"], "with --task phase needs --num-classes N"),
    ("track", [], "with --task segmentation needs --num-classes N"),
])
def test_batch_and_track_zoo_name_flags(image, tmp_path, capsys, command, extra, fragment):
    folder = image.parent
    argv = [command, folder, "--model", "surgenet-caformer", "--no-pretrained", *extra, "--out", tmp_path / "out"]
    code, err = run(surgenet_main, argv, capsys)
    assert_one_line(code, err, fragment)


def test_predict_zoo_name_with_cvs_needs_no_class_count(image, tmp_path, capsys, monkeypatch):
    # cvs has its three criteria: the flag check lets it through to the model (refused here by the fixture)
    argv = ["predict", image, "--model", "surgenet-caformer", "--no-pretrained", "--task", "cvs",
            "--out", tmp_path / "out"]
    with pytest.raises(AssertionError, match="a network was built"):
        surgenet_main([str(a) for a in argv])


def test_cards_out_naming_an_existing_file(tmp_path, capsys):
    existing = tmp_path / "cards.md"
    existing.write_text("# cards\n")
    code, err = run(surgenet_main, ["cards", "--out", existing], capsys)
    assert_one_line(code, err, "argument --out", "is an existing file")


def test_out_inside_a_file_or_a_read_only_folder(tmp_path, capsys):
    existing = tmp_path / "cards.md"
    existing.write_text("# cards\n")
    code, err = run(surgenet_main, ["cards", "--out", existing / "sub"], capsys)
    assert_one_line(code, err, "argument --out", "is a file", "cannot be created")
    if getattr(os, "geteuid", lambda: -1)() == 0:
        pytest.skip("root may write anywhere: the permission check cannot be seen as root")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, err = run(surgenet_main, ["cards", "--out", locked / "cards"], capsys)
    assert_one_line(code, err, "argument --out", "permission denied")


# --------------------------------------------------------------------------- surgenet-train finetune
def _finetune(tmp_path, *extra) -> list:
    return ["finetune", "--task", "cvs", "--model", "surgenet-caformer", "--no-pretrained",
            "--train", tmp_path / "train.csv", "--out", tmp_path / "run", *extra]


@pytest.mark.parametrize("device,fragment", [
    ("gpu", "did you mean 'cuda'"),
    pytest.param("cuda", "no CUDA GPU is visible", marks=needs_no_gpu),
])
def test_finetune_device_flag(tmp_path, capsys, device, fragment):
    code, err = run(train_main, _finetune(tmp_path, "--device", device), capsys)
    assert_one_line(code, err, "argument --device", fragment)


@needs_no_gpu
def test_finetune_device_from_set_is_checked_before_the_data(tmp_path, capsys):
    # train.csv does not exist: the device is reported first, before any data or model
    code, err = run(train_main, _finetune(tmp_path, "--set", "device=cuda"), capsys)
    assert_one_line(code, err, "surgenet-train: error:", "no CUDA GPU is visible")


@pytest.mark.parametrize("setting,fragment", [
    ("class_weighting=inverse", "class_weighting 'inverse' is not one of none, inverse-sqrt, median-frequency"),
    ("label_weighting=auto", "label_weighting 'auto' is not one of none, balanced"),
])
def test_finetune_bad_loss_weighting_is_reported_before_the_data(tmp_path, capsys, setting, fragment):
    # train.csv does not exist: the weighting is reported first
    code, err = run(train_main, _finetune(tmp_path, "--set", setting), capsys)
    assert_one_line(code, err, "surgenet-train: error:", fragment)


def test_finetune_missing_csv(tmp_path, capsys):
    code, err = run(train_main, _finetune(tmp_path), capsys)
    assert_one_line(code, err, "train.csv", "does not exist")


@pytest.mark.parametrize("content,fragment", [
    (b"PK\x03\x04 this is not a whole checkpoint", "damaged or truncated"),
    (None, "is not a surgenet-finetune/1 checkpoint"),
])
def test_finetune_resume_on_a_damaged_or_foreign_last_pth(tmp_path, capsys, content, fragment):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if content is None:  # a pretraining checkpoint where a fine-tuning one should be
        torch.save({"format": "surgenet-dino/1", "step": 3}, run_dir / "last.pth")
    else:
        (run_dir / "last.pth").write_bytes(content)
    code, err = run(train_main, _finetune(tmp_path, "--resume"), capsys)
    assert_one_line(code, err, "last.pth", fragment, "drop --resume")


@pytest.mark.parametrize("option,value,fragment", [
    ("--epochs", "0", "must be >= 1"),
    ("--lr", "-1e-3", "finite number > 0"),
    ("--num-workers", "-2", "must be >= 0"),
    ("--model", "./runs/teacher", "unknown model"),
])
def test_finetune_bad_values(tmp_path, capsys, option, value, fragment):
    code, err = run(train_main, [*_finetune(tmp_path), f"{option}={value}"], capsys)
    assert_one_line(code, err, f"argument {option}", fragment)


def test_finetune_out_naming_an_existing_file(tmp_path, capsys):
    argv = _finetune(tmp_path)
    argv[argv.index("--out") + 1] = tmp_path / "train.csv"
    (tmp_path / "train.csv").write_text("image,c1,c2,c3\n")
    code, err = run(train_main, argv, capsys)
    assert_one_line(code, err, "argument --out", "is an existing file")


# --------------------------------------------------------------------------- surgenet-train pretrain
@pytest.mark.parametrize("setting,fragment", [
    ("train.device=gpu", "did you mean 'cuda'"),
    pytest.param("train.device=cuda", "no CUDA GPU is visible", marks=needs_no_gpu),
    ("optim.lr=[1", "not valid YAML"),
])
def test_pretrain_settings(tmp_path, capsys, setting, fragment):
    frames = tmp_path / "frames"
    frames.mkdir()
    argv = ["pretrain", "--config", "tiny", "--data", frames, "--out", tmp_path / "run", "--set", setting]
    code, err = run(train_main, argv, capsys)
    assert_one_line(code, err, fragment)


def test_pretrain_steps_zero(tmp_path, capsys):
    argv = ["pretrain", "--config", "tiny", "--out", tmp_path / "run", "--steps", "0"]
    code, err = run(train_main, argv, capsys)
    assert_one_line(code, err, "argument --steps", "must be >= 1")


def test_train_command_without_pyyaml_names_the_extra(tmp_path):
    # a fresh interpreter in which PyYAML cannot be imported: the CLI still starts and says what to install
    code = ("import sys; sys.modules['yaml'] = None\n"
            "from surgenet.train.cli import main\n"
            f"sys.exit(main(['pretrain', '--config', 'tiny', '--out', {str(tmp_path / 'run')!r}]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert_one_line(proc.returncode, proc.stderr, "PyYAML", "pip install 'surgenet[train]'")


# --------------------------------------------------------------------------- surgenet-train evaluate
def test_evaluate_missing_csv(tmp_path, capsys):
    argv = ["evaluate", "--model", "surgenet-caformer", "--train", tmp_path / "train.csv", "--val", tmp_path]
    code, err = run(train_main, argv, capsys)
    assert_one_line(code, err, "argument --train", "train.csv does not exist")


def test_evaluate_csv_listing_missing_images(tmp_path, capsys, image):
    listing = tmp_path / "train.csv"
    listing.write_text(f"image,label\n{image.name},0\nmissing.png,1\n")
    argv = ["evaluate", "--model", "surgenet-caformer", "--train", listing, "--val", listing]
    code, err = run(train_main, argv, capsys)
    assert_one_line(code, err, "lists 1 image(s) that do not exist", "missing.png")


def test_surgenet_evaluate_on_an_export_folder_says_what_it_scores(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"onnx")
    argv = ["evaluate", "--model", export, "--data", tmp_path, "--out", tmp_path / "eval"]
    code, err = run(surgenet_main, argv, capsys)
    assert_one_line(code, err, "is a surgenet-export folder", "RUN/best", "--auto-frames")


# ------------------------------------------------------------------------------------ run_command
def _parser(func) -> argparse.ArgumentParser:
    parser = CommandParser(prog="tool")
    parser.add_argument("--n", type=int)
    parser.set_defaults(func=func)
    return parser


def test_run_command_turns_surgenet_errors_and_ctrl_c_into_one_line(capsys):
    def mistake(args):
        raise InputError("the input is wrong; pass another one.")

    def interrupted(args):
        raise KeyboardInterrupt

    assert run_command(_parser(mistake), []) == 2
    assert capsys.readouterr().err == "tool: error: the input is wrong; pass another one.\n"
    assert run_command(_parser(interrupted), []) == 130
    assert capsys.readouterr().err == "tool: interrupted\n"
    code, err = run(lambda argv: run_command(_parser(mistake), argv), ["--n", "x"], capsys)
    assert (code, err) == (2, "tool: error: argument --n: invalid int value: 'x'\n")


def test_run_command_keeps_the_traceback_of_a_bug():
    def bug(args):
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        run_command(_parser(bug), [])


# ------------------------------------------------------------------------------ the library calls
@pytest.mark.parametrize("name", ["./nosuch", "my-seg/", "a/b/c", "~/nosuch-surgenet-model"])
def test_load_model_path_like_names_are_input_errors(name):
    with pytest.raises(InputError, match="no folder"):
        surgenet.load_model(name)


def test_load_model_unknown_name_says_no_folder_either():
    with pytest.raises(UnknownModelError, match="No folder my-seg exists either"):
        surgenet.load_model("my-seg", task="segmentation", num_classes=2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    expected_auto = torch.device("cpu") if NO_GPU else torch.device("cuda", 0)
    assert resolve_device("auto") == resolve_device(None) == expected_auto
    with pytest.raises(InputError, match="did you mean 'cuda'"):
        resolve_device("gpu")
    with pytest.raises(InputError, match="valid: auto, cpu"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="cannot run a model here"):
        resolve_device("meta")
    if NO_GPU:
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device(torch.device("cuda", 0))


def test_predictor_checks_its_device_before_moving_the_model():
    from surgenet.models import SurgeNetModel

    class Model(SurgeNetModel):  # never built: the device check comes first
        def __init__(self):
            torch.nn.Module.__init__(self)

    with pytest.raises(InputError, match="did you mean 'cuda'"):
        surgenet.Predictor(Model(), device="gpu")
