"""Every number a command line takes is bounded: out of its range (0, negative, huge, nan, inf, not a
number) the command stops at parsing with exit code 2 and one line naming the flag; the edges of
the range are accepted.

The flags are found by walking the real parsers (``surgenet``, ``surgenet-train``,
``surgenet-export``, every benchmark script and the demo), so a new numeric flag without a bound fails
:func:`test_every_numeric_flag_is_bounded`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable

import pytest

from surgenet.bounds import BOUNDS
from tests.helpers.scripts import load_script

SCRIPTS = [*sorted(f"benchmarks/{p.name}" for p in (Path(__file__).parents[2] / "benchmarks").glob("*.py")),
           "examples/demo.py"]
# argparse types that take no number (paths, names, devices), by their function or class name.
NOT_NUMBERS = {"existing_path", "existing_file", "output_folder", "output_file", "model_reference", "zoo_name",
               "device_name", "student_name", "Path", "PosixPath", "WindowsPath", "str"}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _script_parser(script: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a script builds in its ``main``, caught when it parses (nothing runs)."""
    module = load_script(script)
    if hasattr(module, "build_parser"):
        return module.build_parser()

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as caught:
        module.main([])
    monkeypatch.undo()
    return caught.value.parser


def _commands(monkeypatch) -> dict[str, tuple[argparse.ArgumentParser, Callable[[list[str]], Any]]]:
    """Command label -> (its parser, the function that runs it on an argv)."""
    from surgenet.cli import build_parser as surgenet_parser, main as surgenet_main
    from surgenet.train.cli import build_parser as train_parser, main as train_main
    from surgenet_export.cli import build_parser as export_parser, main as export_main

    commands = {"surgenet": (surgenet_parser(plugins={}), surgenet_main),
                "surgenet-train": (train_parser(), train_main),
                "surgenet-export": (export_parser(), export_main)}
    for script in SCRIPTS:
        commands[script] = (_script_parser(script, monkeypatch), load_script(script).main)
    return commands


def _actions(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(sub-command words, action) of every option of ``parser`` and its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share their parser
                    seen.add(id(sub))
                    yield from _actions(sub, (*prefix, name))
        else:
            yield prefix, action


@pytest.fixture(scope="module")
def commands():
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _commands(monkeypatch)


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", type(kind).__name__)


def test_every_numeric_flag_is_bounded(commands):
    unbounded = [f"{label} {' '.join(words)} {action.option_strings or action.dest}: {_type_name(action.type)}"
                 for label, (parser, _) in commands.items() for words, action in _actions(parser)
                 if action.type is not None and not hasattr(action.type, "bound_name")
                 and _type_name(action.type) not in NOT_NUMBERS]
    assert not unbounded
    named = {action.type.bound_name for _, (parser, _) in commands.items() for _, action in _actions(parser)
             if hasattr(action.type, "bound_name")}
    assert named <= set(BOUNDS)


def _bounded_flags() -> list[tuple[str, tuple[str, ...], str]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        found = _commands(monkeypatch)
    return [(label, words, action.option_strings[-1])
            for label, (parser, _) in found.items() for words, action in _actions(parser)
            if action.option_strings and hasattr(action.type, "bound_name")]


FLAGS = _bounded_flags()


def _bad_values(name: str) -> list[str]:
    """Values outside the bound ``name``: below, far above, nan, inf, and text that is no number."""
    if name == "upload_bytes":
        return ["0", "17gb", "1e9gb", "nan", "inf", "twenty"]
    bound = BOUNDS[name]
    below = bound.low - 1 if bound.kind is int else (bound.low if bound.low_open else bound.low - 0.5)
    above = bound.high * 10 + 1
    values = [repr(below) if bound.kind is float else str(int(below)), str(int(above)), "nan", "inf", "-inf", "abc"]
    if bound.kind is int:
        values.append("2.5")
    return values


def _find(commands, label: str, words: tuple[str, ...], flag: str) -> argparse.Action:
    parser, _ = commands[label]
    return next(a for w, a in _actions(parser) if w == words and flag in a.option_strings)


def _argv(action: argparse.Action, value: str) -> list[str]:
    if action.nargs == 2:  # --imgsz H W: a good first side, the bad one second
        return [action.option_strings[-1], "64", value]
    return [f"{action.option_strings[-1]}={value}"]  # "=": argparse would read -inf as an option


def _run(main, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("label,words,flag", FLAGS, ids=[f"{l} {' '.join(w)} {f}" for l, w, f in FLAGS])
def test_out_of_range_is_one_line_naming_the_flag(commands, label, words, flag, tmp_path, capsys, monkeypatch):
    import timm

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("a network was built"))
    monkeypatch.chdir(tmp_path)
    action = _find(commands, label, words, flag)
    _, main = commands[label]
    prefix = list(words)
    if words == ("extract-frames",):  # its range is checked when it runs, before any video is read
        (tmp_path / "videos").mkdir()
        prefix += [str(tmp_path / "videos"), str(tmp_path / "frames")]
    for value in _bad_values(action.type.bound_name):
        code, err = _run(main, [*prefix, *_argv(action, value)], capsys)
        assert code == 2, (value, err)
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1, (value, err)
        assert flag in lines[0], (value, lines[0])
    assert not (tmp_path / "frames").exists()


def _edges(name: str) -> list[tuple[str, float]]:
    """In-range values of the bound ``name`` (its edges) and the numbers they parse to."""
    if name == "upload_bytes":
        return [("1", 1), ("16gb", 16 * 1024 ** 3), ("100mb", 100 * 1024 ** 2)]
    bound = BOUNDS[name]
    low = bound.low if not bound.low_open else bound.low + (bound.high - bound.low) * 1e-6
    return [(str(int(v)) if bound.kind is int else repr(float(v)), v) for v in (low, bound.high)]


@pytest.mark.parametrize("label,words,flag", FLAGS, ids=[f"{l} {' '.join(w)} {f}" for l, w, f in FLAGS])
def test_the_edges_of_the_range_are_accepted(commands, label, words, flag):
    action = _find(commands, label, words, flag)
    for text, value in _edges(action.type.bound_name):
        parsed = action.type(text)
        if isinstance(parsed, tuple):  # N -> (N, N) sizes
            assert parsed == (value, value)
        else:
            assert math.isclose(parsed, value), (text, parsed)


# Hand-written cases of the issue, each against what the user would read.
@pytest.mark.parametrize("argv,fragment", [
    (["predict", "--batch-size", "1000000000"], "argument --batch-size: must be <= 4096"),
    (["predict", "--keyframe-every", "0"], "argument --keyframe-every: must be >= 1, got 0"),
    (["predict", "--threshold", "2"], "argument --threshold: must be between 0 and 1, got 2"),
    (["predict", "--num-classes", "10000000"], "argument --num-classes: must be <= 1024"),
    (["batch", "--fps", "1e-9"], "argument --fps: must be a finite number >= 0.001"),
    (["batch", "--fps", "inf"], "argument --fps: must be a finite number"),
    (["batch", "--workers", "-1"], "argument --workers: must be >= 1, got -1"),
    (["features", "--size", "100000"], "argument --size: must be <= 4096, got 100000"),
    (["app", "--port", "70000"], "argument --port: 70000 is not a TCP port (1-65535)"),
])
def test_the_issues_examples_surgenet(argv, fragment, capsys):
    from surgenet.cli import main

    code, err = _run(main, argv, capsys)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and fragment in err, err


@pytest.mark.parametrize("argv,fragment", [
    (["finetune", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["finetune", "--lr", "nan"], "argument --lr: expected a number, got nan"),
    (["finetune", "--lr", "inf"], "argument --lr: must be a finite number > 0"),
    (["finetune", "--clip-length", "0"], "argument --clip-length: must be >= 1"),
    (["finetune", "--num-workers", "-1"], "argument --num-workers: must be >= 0, got -1"),
    (["finetune", "--image-size", "100000"], "argument --image-size: must be <= 4096"),
    (["distill", "--temperature", "0"], "argument --temperature: must be a finite number > 0"),
    (["pretrain", "--batch-size", "1000000000"], "argument --batch-size: must be <= 4096"),
    (["extract-frames", "--fps", "5000"], "argument --fps: must be a finite number >= 0.001 and <= 1000"),
])
def test_the_issues_examples_train(argv, fragment, capsys):
    from surgenet.train.cli import main

    code, err = _run(main, argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_a_mixture_weight_out_of_range_names_the_data_flag(tmp_path, capsys):
    from surgenet.train.cli import main

    code, err = _run(main, ["pretrain", "--config", "tiny", "--out", str(tmp_path / "run"),
                            "--data", f"{tmp_path}/frames:nan"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the weight of --data" in err and "nan" in err
    assert not (tmp_path / "run").exists()


def test_export_image_sides_and_opset(capsys, tmp_path):
    from surgenet_export.cli import main
    from surgenet_export.onnx_export import MAX_OPSET, MIN_OPSET

    assert (MIN_OPSET, MAX_OPSET) == (BOUNDS["opset"].low, BOUNDS["opset"].high)
    for argv, fragment in ((["m", "--imgsz", "256", "100000"], "argument --imgsz: must be <= 4096"),
                           (["m", "--imgsz", "8", "8"], "argument --imgsz: must be >= 16"),
                           (["m", "--opset", "99"], f"argument --opset: must be <= {MAX_OPSET}"),
                           (["m", "--workspace", "0"], "argument --workspace: must be a finite number > 0")):
        code, err = _run(main, [*argv, "--out", str(tmp_path / "out")], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
