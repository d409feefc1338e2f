"""benchmarks/cpu_class.py: its plan is commands the real parsers accept (so the one-command report
cannot drift from the CLI), the cap reaches the measuring steps only, and mistakes exit 2."""

from __future__ import annotations

import pytest

from tests.helpers.scripts import load_script

cpu_class = load_script("benchmarks/cpu_class.py")


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / "endoscapes" / split / "images").mkdir(parents=True)
        (root / "endoscapes" / split / "masks").mkdir()
    (root / "endoscapes" / "val" / "images" / "v1_0.jpg").write_bytes(b"")
    (root / "clips").mkdir()
    (root / "clips" / "clip_a.mp4").write_bytes(b"")
    return root


def _parse(step):
    """The step's arguments through the parser of the command that would run them."""
    argv = step.argv
    if argv[0] == "surgenet" and argv[1] == "train":
        from surgenet.train.cli import build_parser
        return build_parser().parse_args(argv[2:])
    if argv[0] == "surgenet" and argv[1] == "export":
        from surgenet_export.cli import build_parser
        return build_parser().parse_args(argv[2:])
    if argv[0] == "surgenet":
        from surgenet.cli import build_parser
        return build_parser().parse_args(argv[1:])
    return load_script(f"benchmarks/{argv[0]}").build_parser().parse_args(argv[1:])


@pytest.mark.parametrize("cap", cpu_class.CAPS)
def test_every_step_is_a_command_its_parser_accepts(data, tmp_path, cap):
    model, export = tmp_path / "model", tmp_path / "export"
    model.mkdir()
    export.mkdir()
    args = cpu_class.build_parser().parse_args(["--data", str(data), "--out", str(tmp_path / "out"), "--cap", cap,
                                                "--model", str(model), "--export", str(export)])
    steps = cpu_class.plan(args)
    assert [s.name for s in steps] == ["auto", "realtime", "realtime-lookahead", "realtime-overlays", "keyframes",
                                      "keyframes-300", "resolution"]
    for step in steps:
        parsed = _parse(step)
        assert parsed is not None, step.name
        assert step.env["SURGENET_CACHE"] == str(tmp_path / "out" / "cache")
        assert ("ONEDNN_MAX_CPU_ISA" in step.env) == (cap == "avx2"), step.name
    lookahead = next(s for s in steps if s.name == "realtime-lookahead")
    assert _parse(lookahead).lookahead and _parse(lookahead).realtime


def test_without_a_model_it_trains_and_exports_first_and_those_are_never_capped(data, tmp_path):
    args = cpu_class.build_parser().parse_args(["--data", str(data), "--out", str(tmp_path / "out"), "--cap", "avx2",
                                                "--epochs", "2"])
    steps = cpu_class.plan(args)
    assert [s.name for s in steps[:2]] == ["model", "export"]
    train = _parse(steps[0])
    assert train.epochs == 2 and str(train.out) == str(tmp_path / "out" / "seg")
    for step in steps[:2]:
        assert "ONEDNN_MAX_CPU_ISA" not in step.env
    assert str(tmp_path / "out" / "seg" / "best") in steps[1].argv


def test_dry_run_prints_the_commands_and_runs_nothing(data, tmp_path, capsys):
    assert cpu_class.main(["--data", str(data), "--out", str(tmp_path / "out"), "--dry-run", "--cap", "avx2"]) == 0
    text = capsys.readouterr().out
    assert "# realtime-lookahead" in text and "ONEDNN_MAX_CPU_ISA=AVX2" in text and "--lookahead" in text
    assert not (tmp_path / "out" / "log.txt").exists()


@pytest.mark.parametrize("remove, needle", [("clips/clip_a.mp4", "clip_a.mp4 not found"),
                                            ("endoscapes/train", "train not found")])
def test_a_data_folder_without_what_it_needs_is_one_line_and_exit_2(data, tmp_path, capsys, remove, needle):
    import shutil

    target = data / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    code = cpu_class.main(["--data", str(data), "--out", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
