"""torch.hub entry points on the checkout, and the `surgenet` command."""

from __future__ import annotations


import torch

import surgenet
from surgenet.cli import main
from tests.helpers.released import teacher_file
from tests.reference.pvtv2_ref import PVTv2Ref
from tests.helpers.paths import REPO



def test_hub_has_one_entry_per_zoo_model():
    # torch.hub.list only reads GitHub; list the local hubconf the way it does (public callables)
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = {n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")}
    assert {n.replace("-", "_") for n in surgenet.list_models()} <= entries
    assert "backbone" in entries


def test_hub_load_by_entry_and_by_name():
    bb = torch.hub.load(str(REPO), "surgenet_pvtv2", source="local", pretrained=False)
    assert bb.feature_info.channels() == [64, 128, 320, 512]
    bb2 = torch.hub.load(str(REPO), "backbone", "surgenet-convnextv2", source="local", pretrained=False)
    assert bb2.feature_info.channels() == [96, 192, 384, 768]


def test_cli_list_and_info(capsys):
    assert main(["list", "surgenetxl-dinov3-*"]) == 0
    out = capsys.readouterr().out
    assert "surgenetxl-dinov3-vitl16" in out and "surgenet-pvtv2" not in out
    assert main(["info", "surgenet-pvtv2"]) == 0
    out = capsys.readouterr().out
    assert "SurgeNet_PVTv2_checkpoint_epoch0050_teacher.pth" in out and "cc-by-nc-sa-4.0" in out


def test_cli_unknown_name_is_a_clean_error(capsys):
    assert main(["info", "surgenet-pvt"]) == 2
    assert "surgenet-pvtv2" in capsys.readouterr().err


def test_cli_download_uses_the_cache_offline(hf_cache, capsys):
    info = surgenet.model_info("surgenet-pvtv2")
    path = hf_cache.add(info["repo_id"], info["filename"], teacher_file(PVTv2Ref(num_classes=0).state_dict(), 512))
    assert main(["download", "surgenet-pvtv2"]) == 0
    assert str(path.name) in capsys.readouterr().out
    assert main(["download", "surgenet-convnextv2"]) == 2  # not cached, offline
    assert "weights=" in capsys.readouterr().err
    assert main(["download", "--full", "surgenetxl-dinov2-vits14"]) == 2  # ViTs: teacher weights only
    assert "no full DINO checkpoint is released for surgenetxl-dinov2-vits14" in capsys.readouterr().err


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, surgenet; surgenet.list_models(); print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]
