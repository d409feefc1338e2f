"""A user's CSV/JSON/YAML in UTF-8 with a BOM is read; in cp1252 it ends in one line and exit 2."""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgenet.exceptions import InputError
from surgenet.io.text import read_user_text

BOM = codecs.BOM_UTF8


def _frames(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _one_line(capsys, code: int, *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_utf8_with_and_without_bom_reads_alike_and_cp1252_is_named_with_its_byte(tmp_path):
    text = "path,id\nCholé,1\n"
    plain, bom, legacy = tmp_path / "plain.csv", tmp_path / "bom.csv", tmp_path / "legacy.csv"
    plain.write_bytes(text.encode("utf-8"))
    bom.write_bytes(BOM + text.encode("utf-8"))
    legacy.write_bytes(text.encode("cp1252"))
    assert read_user_text(plain) == read_user_text(bom) == text
    with pytest.raises(InputError) as info:
        read_user_text(legacy)
    # "path,id\nChol" is 12 bytes; cp1252 writes é as the single byte 0xe9.
    assert str(legacy) in str(info.value) and "byte 0xe9 at offset 12" in str(info.value)
    assert "CSV UTF-8" in str(info.value)
    (tmp_path / "bom_legacy.csv").write_bytes(BOM + text.encode("cp1252"))
    with pytest.raises(InputError, match="at offset 15"):  # offsets count the BOM: they are the file's
        read_user_text(tmp_path / "bom_legacy.csv")


def test_batch_manifest_with_a_bom_or_in_cp1252(tmp_path, capsys):
    pytest.importorskip("av", reason="surgenet batch decodes videos with PyAV: pip install 'surgenet[video]'")
    pytest.importorskip("pyarrow", reason="surgenet batch writes Parquet: pip install 'surgenet[video]'")
    import surgenet
    from surgenet.batch import discover_inputs
    from tests.helpers.cli import exit_code

    _frames(tmp_path / "Cholé", 2)
    manifest = tmp_path / "list.csv"
    manifest.write_bytes(BOM + "path,id\nCholé,case1\n".encode("utf-8"))
    found = discover_inputs(manifest)
    assert [(i.id, i.kind, Path(i.path).name) for i in found] == [("case1", "frames", "Cholé")]  # 'path' found

    manifest.write_bytes("path,id\nCholé,case1\n".encode("cp1252"))
    model = tmp_path / "model"
    surgenet.load_model("resnet18", task="cvs", pretrained=False).save_pretrained(model)
    out = tmp_path / "out"
    _one_line(capsys, exit_code(["batch", str(manifest), "--model", str(model), "--out", str(out)]),
              str(manifest), "0xe9", "CSV UTF-8")


def test_train_label_file_with_a_bom_or_in_cp1252(tmp_path, capsys):
    from surgenet.train.cli import main
    from surgenet.train.formats import open_dataset

    _frames(tmp_path / "frames", 2)
    table = tmp_path / "cvs.csv"
    rows = "image,c1,c2,c3\nframes/00.png,1,0,0.5\nframes/01.png,0,1,0\n"
    table.write_bytes(BOM + rows.encode("utf-8"))
    ds = open_dataset(f"folder:{table}", "cvs")
    assert [Path(p).name for p in ds.paths] == ["00.png", "01.png"]
    assert np.allclose(ds.labels, [[1, 0, 0.5], [0, 1, 0]])

    table.write_bytes((rows + "frames/00.png,1,1,1  # vérifié\n").encode("cp1252"))
    try:
        code = main(["finetune", "--task", "cvs", "--model", "surgenetxl-caformer", "--no-pretrained",
                     "--train", f"folder:{table}", "--out", str(tmp_path / "out")])
    except SystemExit as exc:
        code = int(exc.code)
    _one_line(capsys, code, str(table), "0xe9", "UTF-8")


def test_yaml_config_with_a_bom_or_in_cp1252(tmp_path, capsys):
    from surgenet.train.cli import main
    from surgenet.train.config import load_config
    from surgenet.train.finetune import FinetuneConfig

    config = tmp_path / "run.yaml"
    config.write_bytes(BOM + "epochs: 3\nclass_names: [fond, clé]\n".encode("utf-8"))
    cfg = load_config(config, cls=FinetuneConfig)
    assert cfg.epochs == 3 and cfg.class_names == ["fond", "clé"]

    config.write_bytes("epochs: 3\nclass_names: [fond, clé]\n".encode("cp1252"))
    try:
        code = main(["finetune", "--task", "cvs", "--model", "surgenetxl-caformer", "--no-pretrained", "--config",
                     str(config), "--train", str(tmp_path), "--out", str(tmp_path / "out")])
    except SystemExit as exc:
        code = int(exc.code)
    _one_line(capsys, code, str(config), "0xe9", "UTF-8")


def test_saved_model_config_with_a_bom_or_in_cp1252(tmp_path):
    import surgenet

    folder = tmp_path / "model"
    surgenet.load_model("resnet18", task="cvs", pretrained=False).save_pretrained(folder)
    config = folder / "config.json"
    original = config.read_bytes()
    config.write_bytes(BOM + original)  # what an editor that adds a BOM leaves
    assert surgenet.load_model(folder).task == "cvs"
    config.write_bytes(original.replace(b'"cvs"', b'"cvs", "note": "r\xe9vis\xe9"', 1))
    with pytest.raises(InputError, match="config.json is not UTF-8 text"):
        surgenet.load_model(folder)
