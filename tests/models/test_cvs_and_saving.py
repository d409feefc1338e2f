"""CVS model outputs, and save_pretrained / load_model(folder) / push_to_hub round trips for every task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import surgenet
from surgenet.exceptions import CheckpointError, InputError, KeyMismatchError
from surgenet.models import CVS_CRITERIA, CVSModel, PhaseModel, SegmentationModel
from surgenet.zoo.registry import get_entry

# One family per task, so the three round trips together cover CNNs, a PVT and a ViT.
SAVE_CASES = {
    "segmentation": ("surgenet-convnextv2", dict(num_classes=4, class_names=["bg", "liver", "tool", "fat"],
                                                 normalization="surgical", input_size=(96, 128))),
    "phase": ("surgenetxl-dinov2-vits14", dict(num_classes=7, temporal="lstm", hidden_size=24)),
    "cvs": ("surgenet-pvtv2", dict(hidden_dim=32, dropout=0.2, input_size=(64, 64))),
}
CLASSES = {"segmentation": SegmentationModel, "phase": PhaseModel, "cvs": CVSModel}


def _randomize_task_layers(model: torch.nn.Module, seed: int) -> None:
    # Non-default values everywhere, so a tensor that is not restored shows in the outputs.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))


def _inputs(task: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    shape = (3, 3, 56, 56) if task == "phase" else (2, 3, 64, 64)  # phase: one clip of 3 frames
    return torch.randn(shape, generator=gen)


@pytest.fixture(scope="module", params=list(SAVE_CASES))
def saved(request, tmp_path_factory):
    task = request.param
    name, kwargs = SAVE_CASES[task]
    model = surgenet.load_model(name, task=task, pretrained=False, **kwargs)
    _randomize_task_layers(model, seed=1)
    with torch.inference_mode():
        expected = model(_inputs(task))
    folder = model.save_pretrained(tmp_path_factory.mktemp(task) / "saved")
    return task, model, expected, folder


def test_cvs_outputs_are_per_criterion_probabilities():
    model = surgenet.load_model("surgenet-caformer", task="cvs", pretrained=False, hidden_dim=16)
    assert model.num_classes == 3 and model.class_names == CVS_CRITERIA
    x = torch.randn(2, 3, 64, 64) * 3
    with torch.inference_mode():
        logits, probs = model(x), model.predict_proba(x)
    assert tuple(logits.shape) == (2, 3)
    assert ((probs >= 0) & (probs <= 1)).all()
    torch.testing.assert_close(probs, 1 / (1 + torch.exp(-logits)))
    with pytest.raises(InputError):
        model(torch.randn(3, 64, 64))


def test_save_writes_the_three_files(saved):
    task, model, _, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == task and config["backbone"] == model.entry.name
    assert config["arch"] == model.entry.arch
    tensors = load_file(folder / "model.safetensors")
    assert set(tensors) == set(model.state_dict())  # every tensor, the backbone included
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == get_entry(model.entry.name).license == "cc-by-nc-sa-4.0"
    assert header["library_name"] == "surgenet"
    assert f"{model.num_classes} " in card and "Outputs" in card


def test_load_model_of_the_folder_restores_the_model(saved):
    task, model, expected, folder = saved
    restored = surgenet.load_model(folder)
    assert type(restored) is CLASSES[task]
    assert not restored.training
    assert restored.config == model.config
    with torch.inference_mode():
        got = restored(_inputs(task))
    torch.testing.assert_close(got, expected, atol=0, rtol=0)  # same tensors, same computation
    # the class's own from_pretrained agrees, and refuses another task's folder
    other = next(cls for t, cls in CLASSES.items() if t != task)
    with pytest.raises(CheckpointError, match="load_model"):
        other.from_pretrained(folder)


def test_saved_config_survives_a_round_trip_of_the_transform(saved):
    task, model, _, folder = saved
    a, b = surgenet.create_transform(model), surgenet.create_transform(folder)
    assert (a.size, a.mean, a.std) == (b.size, b.mean, b.std)
    if task == "segmentation":
        mean, std = get_entry(model.entry.name).alt_normalization["surgical"]
        assert b.size == (96, 128) and b.mean == tuple(mean) and b.std == tuple(std)


def test_folder_mismatches_are_refused(saved):
    task, _, _, folder = saved
    other = next(t for t in CLASSES if t != task)
    with pytest.raises(InputError, match=f"holds a {task} model"):
        surgenet.load_model(folder, task=other)
    with pytest.raises(InputError, match="no weights= or model options"):
        surgenet.load_model(folder, weights=folder / "model.safetensors")


def test_tampered_weights_raise_key_mismatch(saved, tmp_path):
    _, _, _, folder = saved
    copy = Path(shutil.copytree(folder, tmp_path / "tampered"))
    tensors = load_file(copy / "model.safetensors")
    dropped = sorted(tensors)[-1]
    del tensors[dropped]
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(KeyMismatchError, match="missing keys") as info:
        surgenet.load_model(copy)
    assert info.value.missing == [dropped]


def test_folder_without_weights_or_config_is_refused(saved, tmp_path):
    _, _, _, folder = saved
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    shutil.copy(folder / "config.json", only_config)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        surgenet.load_model(only_config)
    (only_config / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        surgenet.load_model(only_config)


@pytest.mark.parametrize("saved", ["segmentation"], indirect=True)
def test_weights_of_a_saved_model_as_a_file(saved):
    task, model, expected, folder = saved
    name, kwargs = SAVE_CASES[task]
    again = surgenet.load_model(name, task=task, weights=folder / "model.safetensors", **kwargs)
    with torch.inference_mode():
        torch.testing.assert_close(again(_inputs(task)), expected, atol=0, rtol=0)


def test_push_to_hub_uploads_what_load_model_restores(saved, monkeypatch, tmp_path, hf_cache):
    from huggingface_hub import HfApi

    task, model, expected, _ = saved
    calls: dict = {}

    def fake_create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        # the folder is temporary: keep what would be uploaded
        calls["upload"] = (repo_id, kwargs, shutil.copytree(folder_path, tmp_path / "uploaded"))
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    repo_id = f"someone/surgenet-{task}"
    assert model.push_to_hub(repo_id, private=True, card_extra={"metrics": {"score": 0.5}}) == "commit-info"

    assert calls["create_repo"] == (repo_id, {"private": True, "exist_ok": True, "repo_type": "model"})
    up_repo, up_kwargs, uploaded = calls["upload"]
    assert up_repo == repo_id and up_kwargs["repo_type"] == "model"
    assert task in up_kwargs["commit_message"]
    uploaded = Path(uploaded)
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (uploaded / "README.md").read_text()
    assert f"load_model({repo_id!r})" in card and "| score | 0.5 |" in card

    # What was uploaded is a complete model: put it where the Hub cache has it and load it by repo id.
    for file in uploaded.iterdir():
        hf_cache.add(repo_id, file.name, file.read_bytes())
    restored = surgenet.load_model(repo_id)
    assert restored.config == model.config
    with torch.inference_mode():
        torch.testing.assert_close(restored(_inputs(task)), expected, atol=0, rtol=0)
