"""The numbers of a saved model's ``config.json`` that size what is built (``num_classes``, the
sides of ``input_size``) are checked when the folder is loaded: out of range, one line that names
the file and the key, before any network is built; in range, the model loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import surgenet
from surgenet.exceptions import SurgeNetError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = surgenet.load_model("surgenet-pvtv2", task="cvs", pretrained=False, hidden_dim=16, input_size=(64, 64))
    return model.save_pretrained(tmp_path_factory.mktemp("cvs") / "saved")


def _edited(saved, tmp_path, **changes):
    folder = tmp_path / "edited"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("changes,key", [
    ({"num_classes": 10 ** 7}, "num_classes"),
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": "three"}, "num_classes"),
    ({"input_size": [3, 100000, 64]}, "input_size"),
    ({"input_size": [3, 64, 0]}, "input_size"),
    ({"input_size": [3, 64, 64.5]}, "input_size"),
    ({"input_size": "big"}, "input_size"),
])
def test_out_of_range_numbers_name_the_file_and_the_key(saved, tmp_path, changes, key, monkeypatch):
    import timm

    folder = _edited(saved, tmp_path, **changes)
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("a network was built"))
    with pytest.raises(SurgeNetError) as info:
        surgenet.load_model(folder)
    message = str(info.value)
    assert str(folder / "config.json") in message and key in message and "\n" not in message


def test_the_predict_command_says_it_in_one_line(saved, tmp_path, capsys):
    from surgenet.cli import main

    folder = _edited(saved, tmp_path, num_classes=10 ** 7)
    frame = tmp_path / "frame.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(frame)
    code = main(["predict", str(frame), "--model", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "config.json: num_classes: must be <= 1024, got 10000000" in err


def test_in_range_numbers_load(saved, tmp_path):
    folder = _edited(saved, tmp_path, input_size=[3, 4096, 16])
    assert surgenet.load_model(folder).config["input_size"] == [3, 4096, 16]
