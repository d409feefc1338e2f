"""The weights= forms of load_model and the released backbone under a task model.

(save_pretrained / load_model(folder) / push_to_hub round trips are in
test_models_cvs_and_saving.py.)
"""

from __future__ import annotations

import pytest
import torch

import surgenet
from surgenet.zoo.backbones import create_network
from surgenet.zoo.registry import get_entry
from tests.helpers.released import teacher_file
from tests.reference import randomize_

NAME = "surgenetxl-dinov1-vits16"  # the cheapest backbone of the zoo


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=0, rtol=0, msg=key)


@pytest.fixture(scope="module")
def cvs_model():
    return randomize_(surgenet.load_model(NAME, task="cvs", pretrained=False), seed=11).eval()


def test_weights_forms(cvs_model, tmp_path):
    folder = cvs_model.save_pretrained(tmp_path / "cvs")
    # A save_pretrained folder as weights= restores that model.
    _same_state(surgenet.load_model(NAME, task="cvs", weights=folder), cvs_model)
    # The backbone of a task model folder loads into load_backbone (the core drops head.*).
    _same_state(surgenet.load_backbone(NAME, weights=folder), cvs_model.backbone)
    # Backbone-only weights (a released teacher file): the backbone is loaded, the task layers
    # are new, and a segmentation model can be built on a CVS model's backbone.
    torch.save(teacher_file(cvs_model.backbone.model.state_dict(), 384), tmp_path / "teacher.pth")
    seg = surgenet.load_model(NAME, task="segmentation", num_classes=3, weights=tmp_path / "teacher.pth")
    _same_state(seg.backbone, cvs_model.backbone)


def test_pretrained_loads_the_released_backbone(hf_cache, monkeypatch):
    entry = get_entry(NAME)
    network = randomize_(create_network(entry.arch), seed=5)
    hf_cache.add(entry.repo_id, entry.filename, teacher_file(network.state_dict(), 384))
    monkeypatch.setattr("surgenet.zoo.hub._warned_licenses", set())
    with pytest.warns(UserWarning, match="non-commercial"):
        model = surgenet.load_model(NAME, task="phase", num_classes=7, pretrained=True)
    _same_state(model.backbone.model, network)


def test_register_count_of_the_weights_survives_task_models_and_saving(tmp_path):
    # A DINOv2 file without registers (the official loader's layout) under every route of load_model.
    from tests.reference.vit_ref import dinov2_ref

    ref = randomize_(dinov2_ref(num_register_tokens=0, img_size=336, patch_size=14, embed_dim=384,
                                depth=12, num_heads=6), 12).eval()
    torch.save(ref.state_dict(), tmp_path / "noreg.pth")
    x = torch.randn(1, 3, 112, 112)
    model = surgenet.load_model("surgenetxl-dinov2-vits14", task="cvs", weights=tmp_path / "noreg.pth")
    assert model.backbone.model.num_reg_tokens == 0
    assert model.config["backbone_kwargs"] == {"reg_tokens": 0, "no_embed_class": False}
    restored = surgenet.load_model(model.save_pretrained(tmp_path / "saved"))
    assert restored.backbone.model.num_reg_tokens == 0
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "task.safetensors"))  # a bare task state dict
    bare = surgenet.load_model("surgenetxl-dinov2-vits14", task="cvs", weights=tmp_path / "task.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x))
        torch.testing.assert_close(bare(x), model(x))
