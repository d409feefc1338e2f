"""One `surgenet` command: `surgenet train ...` and `surgenet export ...` are the same commands as
`surgenet-train` and `surgenet-export`, found through entry points."""

from __future__ import annotations

import pytest

from surgenet.cli import build_parser, main, plugin_commands


def test_train_and_export_are_plugged_in_and_listed():
    plugins = plugin_commands()
    assert {"train", "export"} <= set(plugins)
    assert plugins["train"].value == "surgenet.train.cli:main"
    assert "train" in build_parser().format_help() and "export" in build_parser().format_help()


def test_surgenet_train_runs_the_training_command(capsys):
    from surgenet.train.cli import main as train_main

    assert main(["train", "configs"]) == 0
    via_surgenet = capsys.readouterr().out
    assert train_main(["configs"]) == 0
    assert capsys.readouterr().out == via_surgenet and "tiny" in via_surgenet


def test_a_mistake_in_a_plugged_in_command_is_one_line_and_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["train", "probe", "--model", "no-such-model", "--train", str(tmp_path), "--val", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-model" in err[0]


def test_a_plugin_whose_extra_is_missing_names_it(monkeypatch, capsys):
    class Broken:
        name, value = "export", "surgenet_export.cli:main"

        def load(self):
            raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    monkeypatch.setattr("surgenet.cli.plugin_commands", lambda: {"export": Broken()})
    assert main(["export", "m", "--out", "x"]) == 2
    assert "pip install 'surgenet[export]'" in capsys.readouterr().err
