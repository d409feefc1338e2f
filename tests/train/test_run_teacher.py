"""A pretraining run trained with non-default network arguments loads as trained: the run folder
(``RUN/teacher`` and ``RUN/checkpoint.pth``, written here by the trainer's own writers) records them,
and ``load_backbone``/``load_model`` rebuild that network, not the architecture's defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import surgenet
from surgenet.zoo.backbones import FeatureBackbone, create_network
from surgenet.exceptions import KeyMismatchError

pytest.importorskip("yaml")

from surgenet.train.run_state import save_checkpoint  # noqa: E402
from surgenet.train.config import load_config, to_dict  # noqa: E402
from surgenet.train.teacher_export import export_teacher  # noqa: E402

NAME = "vit_tiny_patch16_224"
# Every argument differs from the architecture's default (patch 16, depth 12, 224 px, width 192).
KWARGS = {"patch_size": 8, "depth": 4, "img_size": 32, "embed_dim": 64, "num_heads": 2}


def _network(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    network = create_network(NAME, **{**KWARGS, **kwargs})
    with torch.no_grad():  # non-trivial values everywhere, so any misplaced tensor shows
        for p in network.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return network.eval()


def _run(tmp_path: Path, network: torch.nn.Module, recorded: dict) -> Path:
    """A run folder as ``surgenet-train pretrain`` leaves it: ``teacher/`` and ``checkpoint.pth``."""
    run = tmp_path / "run"
    run.mkdir()
    export_teacher(network, NAME, run / "teacher", {"step": 2, "epoch": 1, "method": "dino",
                                                    "network_kwargs": recorded})
    overrides = [f"model.name={NAME}", "model.network_kwargs={" + ", ".join(f"{k}: {v}" for k, v in recorded.items())
                 + "}"]
    teacher = {f"backbone.model.{k}": v for k, v in network.state_dict().items()}
    teacher["head.last_layer.weight"] = torch.zeros(8, 4)  # the DINO head, dropped on loading
    save_checkpoint({"step": 2, "epoch": 1, "config": to_dict(load_config("tiny", overrides)), "method": "dino",
                     "teacher": teacher, "student": dict(teacher)}, run)
    return run


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, list[torch.Tensor], torch.Tensor]:
    network = _network()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = FeatureBackbone(network, NAME).eval()(x)
    return network, expected, x


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_run_config_records_the_arguments(tmp_path, trained):
    run = _run(tmp_path, trained[0], KWARGS)
    config = json.loads((run / "teacher" / "config.json").read_text())
    assert config["network_kwargs"] == KWARGS
    # The network was built for 32x32, so its default transform resizes there, not to the zoo's 224.
    assert config["input_size"] == [3, 32, 32]
    assert surgenet.create_transform(run / "teacher").size == (32, 32)


def test_load_backbone_rebuilds_the_recorded_network_from_each_run_file(tmp_path, trained):
    network, expected, x = trained
    run = _run(tmp_path, network, KWARGS)
    for loaded in (surgenet.load_backbone(run / "teacher"),
                   surgenet.load_backbone(NAME, weights=run / "teacher"),
                   surgenet.load_backbone(NAME, weights=run / "teacher" / "model.safetensors"),
                   surgenet.load_backbone(NAME, weights=run / "checkpoint.pth")):
        assert _same_weights(loaded.model, network)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(loaded.eval()(x), expected))
    # The caller may still change an argument that leaves the weights' shapes alone.
    tuned = surgenet.load_backbone(run / "teacher", drop_path_rate=0.25)
    assert tuned.model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.25)


@pytest.mark.parametrize("weights", ["teacher", "teacher/model.safetensors", "checkpoint.pth"])
def test_load_model_on_a_run_uses_its_network_and_saves_it(tmp_path, trained, weights):
    network, expected, x = trained
    run = _run(tmp_path, network, KWARGS)
    model = surgenet.load_model(NAME, task="segmentation", num_classes=3, weights=run / weights)
    assert _same_weights(model.backbone.model, network)
    assert model.backbone.model.patch_embed.patch_size == (8, 8) and len(model.backbone.model.blocks) == 4
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.backbone(x), expected))
        out = model(x)
    assert out.shape == (2, 3, 32, 32)
    assert model.config["input_size"] == [3, 32, 32]  # what the Predictor resizes frames to
    # The saved folder records the arguments, so it rebuilds the same network offline.
    restored = surgenet.load_model(model.save_pretrained(tmp_path / "saved"))
    assert {k: restored.config["backbone_kwargs"][k] for k in KWARGS} == KWARGS
    with torch.no_grad():
        assert torch.equal(restored(x), out)


def test_a_genuine_mismatch_still_names_the_keys(tmp_path, trained):
    # The run records 3 blocks but its weights hold 4: strict loading refuses and names block 3.
    run = _run(tmp_path, trained[0], {**KWARGS, "depth": 3})
    for load in (lambda: surgenet.load_backbone(run / "teacher"),
                 lambda: surgenet.load_model(NAME, task="cvs", weights=run / "checkpoint.pth")):
        with pytest.raises(KeyMismatchError) as err:
            load()
        assert err.value.missing == []
        assert err.value.unexpected and all(k.startswith("blocks.3.") for k in err.value.unexpected)
        assert "blocks.3.attn.qkv.weight" in str(err.value)
