"""Every number of a training config (YAML file, ``--set``, a flag) is checked against the table
of bounds, with the rules between keys, before any data is read or any network built; the shipped
configs are inside every bound."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from surgenet.bounds import BOUNDS
from surgenet.exceptions import InputError
from surgenet.train.config import PretrainConfig, available_configs, check_numbers, load_config
from surgenet.train.distill import DistillConfig
from surgenet.train.finetune import FinetuneConfig


def _sections(cls: type, seen: set | None = None):
    seen = set() if seen is None else seen
    if cls in seen:
        return
    seen.add(cls)
    yield cls
    for hint in typing.get_type_hints(cls).values():
        for inner in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(inner):
                yield from _sections(inner, seen)


def _is_number(hint) -> bool:
    if hint in (int, float):
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType, tuple):
        return any(_is_number(a) for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis)
    return False


@pytest.mark.parametrize("config", [PretrainConfig, FinetuneConfig, DistillConfig])
def test_every_number_of_every_section_has_a_bound(config):
    for section in _sections(config):
        numbers = getattr(section, "NUMBERS", {})
        hints = typing.get_type_hints(section)
        wanted = {f.name for f in dataclasses.fields(section) if _is_number(hints[f.name])}
        assert wanted == set(numbers), section.__name__
        assert set(numbers.values()) <= set(BOUNDS), section.__name__


@pytest.mark.parametrize("name", available_configs())
@pytest.mark.parametrize("method", ["dino", "byol", "simclr", "msn"])
def test_the_shipped_configs_are_inside_the_bounds(name, method):
    check_numbers(load_config(name, [f"method={method}"]))


@pytest.mark.parametrize("override,fragment", [
    ("train.epochs=0", "config key train.epochs: must be >= 1, got 0"),
    ("train.batch_size=1000000000", "config key train.batch_size: must be <= 4096"),
    ("crops.global_size=100000", "config key crops.global_size: must be <= 4096"),
    ("optim.lr=nan", "config key optim.lr: expected a number, got nan"),
    ("optim.lr=.inf", "config key optim.lr: must be a finite number > 0"),
    ("optim.lr=-1e-3", "config key optim.lr: must be a finite number > 0"),
    ("data.fps=0", "config key data.fps: must be a finite number >= 0.001"),
    ("data.num_workers=-1", "config key data.num_workers: must be >= 0"),
    ("loss.student_temp=0", "config key loss.student_temp: must be a finite number > 0"),
    ("head.out_dim=10000000", "config key head.out_dim: must be <= 262144"),
    ("crops.local_crops=1000", "config key crops.local_crops: must be <= 64"),
    ("crops.global_scale=[0.5, 2]", "config key crops.global_scale: must be a finite number > 0 and <= 1"),
    ("crops.std=[0.2, 0, 0.2]", "config key crops.std: must be a finite number > 0"),
    ("train.epochs=2.5", "config key train.epochs needs a int"),
    ("data.sources=[{path: a, weight: 0}]", "config key data.sources[0].weight: must be a finite number > 0"),
    # the rules between keys
    ("crops.local_size=64", "config key crops.local_size (64) must be < crops.global_size (64)"),
    ("crops.local_scale=[0.4, 0.05]", "config key crops.local_scale must be two numbers [low, high] with low <= high"),
    ("optim.min_lr=1", "config key optim.min_lr (1.0) must be <= optim.lr"),
    ("msn.focal_size=64", "config key msn.focal_size (64) must be < msn.random_size (64)"),
])
def test_pretrain_override_out_of_range(override, fragment):
    with pytest.raises(InputError) as info:
        load_config("tiny", [override])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_a_yaml_file_out_of_range_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import timm

    from surgenet.train.cli import main

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("a network was built"))
    config = tmp_path / "big.yaml"
    config.write_text("crops:\n  global_size: 100000\n")
    code = main(["pretrain", "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "config key crops.global_size: must be <= 4096" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command,setting,fragment", [
    ("finetune", "image_size=8", "config key image_size: must be >= 16"),
    ("finetune", "warmup=1.5", "config key warmup: must be between 0 and 1"),
    ("finetune", "lr=nan", "config key lr: expected a number"),
    ("finetune", "crop_scale=[0.9, 0.5]", "config key crop_scale must be two numbers"),
    ("distill", "cache_reduction=0", "config key cache_reduction: must be >= 1"),
    ("distill", "teacher_batch_size=100000", "config key teacher_batch_size: must be <= 4096"),
    ("distill", "fps=.inf", "config key fps: must be a finite number"),
])
def test_finetune_and_distill_set_out_of_range(command, setting, fragment, tmp_path, capsys, monkeypatch):
    import timm

    from surgenet.train.cli import main

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("a network was built"))
    argv = {"finetune": ["finetune", "--task", "cvs", "--model", "surgenet-caformer", "--train", str(tmp_path)],
            "distill": ["distill", "--teacher", "surgenet-caformer", "--task", "cvs"]}[command]
    code = main([*argv, "--out", str(tmp_path / "run"), "--set", setting])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "run").exists()


def test_a_config_built_in_python_is_checked_by_the_library(tmp_path):
    from surgenet.train.finetune import finetune

    with pytest.raises(InputError, match="config key batch_size: must be <= 4096"):
        finetune(FinetuneConfig(task="cvs", train=str(tmp_path), batch_size=10 ** 9), tmp_path / "run")
    assert not (tmp_path / "run").exists()
