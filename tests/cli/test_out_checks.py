"""Every command that writes refuses an ``--out`` it cannot write to (an existing file, a path
under a file) at parsing, in one line with exit code 2, before any model is loaded or data read."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers.scripts import load_script

FOLDER = "{out}"  # replaced by the path under test


def _surgenet(argv: list[str]) -> int:
    from surgenet.cli import main

    return main(argv)


def _train(argv: list[str]) -> int:
    from surgenet.train.cli import main

    return main(argv)


def _export(argv: list[str]) -> int:
    from surgenet_export.cli import main

    return main(argv)


def _benchmark(name: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        module = load_script(f"{'examples' if name == 'demo' else 'benchmarks'}/{name}.py")
        old = sys.argv
        sys.argv = [f"{name}.py", *argv]  # some benchmarks read sys.argv only
        try:
            return module.main(argv) if module.main.__code__.co_argcount else module.main()
        finally:
            sys.argv = old
    return run


# (command, argv with the output placeholder first where the parser allows it)
COMMANDS = {
    "predict": (_surgenet, ["predict", "--out", FOLDER, "{input}", "--model", "surgenetxl-caformer"]),
    "evaluate": (_surgenet, ["evaluate", "--out", FOLDER, "--model", "x", "--data", "x"]),
    "features": (_surgenet, ["features", "--out", "{png}", "{input}", "--model", "x"]),
    "track": (_surgenet, ["track", "--out", FOLDER, "{input}"]),
    "batch": (_surgenet, ["batch", "--out", FOLDER, "{input}", "--model", "surgenetxl-caformer"]),
    "embed": (_surgenet, ["embed", "--out", FOLDER, "{input}", "--model", "surgenetxl-caformer"]),
    "zoo cards": (_surgenet, ["cards", "--out", FOLDER]),
    "finetune": (_train, ["finetune", "--out", FOLDER, "--task", "cvs", "--model", "surgenetxl-caformer",
                          "--train", "x"]),
    "pretrain": (_train, ["pretrain", "--out", FOLDER, "--config", "tiny"]),
    "distill": (_train, ["distill", "--out", FOLDER, "--teacher", "x"]),
    "extract-frames": (_train, ["extract-frames", "{input}", FOLDER]),
    "export-teacher": (_train, ["export-teacher", "{input}", FOLDER]),
    "export": (_export, ["--out", FOLDER, "surgenetxl-caformer"]),
    "bench archive": (_benchmark("archive"), ["--out", FOLDER, "--data", "x"]),
    "bench demo": (_benchmark("demo"), ["--out", FOLDER]),
    "bench distill": (_benchmark("distill"), ["--out", FOLDER, "x"]),
    "bench real_data": (_benchmark("real_data"), ["--out", FOLDER, "--data", "x"]),
    "bench realtime_video": (_benchmark("realtime_video"), ["--out", FOLDER, "--clip", "{input}", "--model", "x"]),
    "bench ssl_compare": (_benchmark("ssl_compare"), ["--out", FOLDER, "--data", "x", "--cpu-budget", "1"]),
    "bench gpu_check": (_benchmark("gpu_check"), [FOLDER]),
    "bench latency --json": (_benchmark("latency"), ["--json", "{folder_as_file}", "--model", "x"]),
    "bench tracking --json": (_benchmark("tracking"), ["--json", "{folder_as_file}"]),
    "bench pretrain_throughput --json": (_benchmark("pretrain_throughput"), ["--json", "{folder_as_file}"]),
}


def _argv(template: list[str], out: Path, tmp_path: Path) -> list[str]:
    frame = tmp_path / "frame.png"
    frame.write_bytes(b"not read: the command stops at --out")
    values = {"{out}": str(out), "{png}": str(out), "{input}": str(frame), "{folder_as_file}": str(tmp_path)}
    return [values.get(a, a) for a in template]


def _exit_code(run: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return int(run(argv) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("case", ["existing file", "under a file"])
def test_a_command_refuses_an_output_it_cannot_write_in_one_line(name, case, tmp_path, capsys):
    run, template = COMMANDS[name]
    blocker = tmp_path / "taken.txt"
    blocker.write_text("a user's file\n")
    out = blocker if case == "existing file" else blocker / "sub" / "out"
    argv = _argv(template, out, tmp_path)
    if "{folder_as_file}" in template:  # these write one file: a folder is what they cannot take
        if case == "under a file":
            argv = [str(blocker / "r.json") if a == str(tmp_path) else a for a in argv]
    if "features" == name and case == "existing file":
        argv = [str(tmp_path) if a == str(out) else a for a in argv]  # features writes a PNG: a folder is wrong
    assert _exit_code(run, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    folder_refused = case == "existing file" and ("{folder_as_file}" in template or name == "features")
    expected = f"{tmp_path} is a folder" if folder_refused else str(blocker)
    assert "error" in err and expected in err, err  # the output is what is refused, not a later input
    assert blocker.read_text() == "a user's file\n"  # the user's file is untouched


def test_an_output_folder_without_write_permission_is_one_line(tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: permissions cannot be tested as root")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _exit_code(_surgenet, ["evaluate", "--out", str(locked / "eval"), "--model", "x", "--data", "x"]) == 2
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "permission denied" in err
