"""Model cards: a YAML header the Hub can read, and facts taken from the registry entry."""

from __future__ import annotations

import pytest
import yaml

import surgenet
from surgenet.zoo.cards import render_card
from surgenet.zoo.registry import get_entry


def _split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n"), "the Hub reads metadata only from a header at the very top"
    header, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


@pytest.mark.parametrize("name", surgenet.list_models())
def test_backbone_card_header_parses_for_every_model(name):
    entry = get_entry(name)
    meta, body = _split(render_card(entry))
    assert meta["license"] == entry.license
    assert meta["library_name"] == "surgenet"
    assert meta["pipeline_tag"] == "image-feature-extraction"
    assert isinstance(meta["tags"], list) and "surgenet" in meta["tags"] and entry.family in meta["tags"]
    assert f"# {name}" in body
    assert entry.arch in body and entry.repo_id in body
    assert f"load_backbone({name!r})" in body


@pytest.mark.parametrize("task, tag, unit", [
    ("segmentation", "image-segmentation", "classes"),
    ("phase", "video-classification", "phases"),
    ("cvs", "image-classification", "criteria"),
    ("tools", "image-classification", "tools"),
])
def test_task_card_names_the_task_and_its_outputs(task, tag, unit):
    entry = get_entry("surgenet-pvtv2")
    names = ["background", "liver", "tool: grasper"]  # a colon must not break anything
    card = render_card(entry, task, {"num_classes": 3, "class_names": names, "head": {"hidden_dim": 64},
                                     "metrics": {"mIoU": 0.71}, "repo_id": "someone/my-model"})
    meta, body = _split(card)
    assert meta["license"] == entry.license
    assert meta["pipeline_tag"] == tag
    assert meta["library_name"] == "surgenet"
    assert meta["base_model"] == entry.repo_id
    assert f"- Outputs: 3 {unit}" in body
    assert all(f"`{n}`" in body for n in names)
    assert "hidden_dim=64" in body and "| mIoU | 0.71 |" in body
    assert "load_model('someone/my-model')" in body
    assert "not validated for clinical decisions" in body


def test_card_input_size_and_statistics_come_from_extra_when_given():
    entry = get_entry("surgenet-caformer")
    _, body = _split(render_card(entry, "segmentation", {"num_classes": 2, "input_size": [3, 128, 160],
                                                         "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}))
    assert "128x160 pixels" in body
    assert "mean (0.1, 0.2, 0.3)" in body and "std (0.4, 0.5, 0.6)" in body


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="segmentation"):
        render_card(get_entry("surgenet-caformer"), "detection")


def test_card_header_reads_back_through_huggingface_hub():
    from huggingface_hub import ModelCard

    entry = get_entry("surgenet-pvtv2")
    card = ModelCard(render_card(entry, "segmentation", {"num_classes": 2, "class_names": ["a", "tool: b"]}))
    data = card.data.to_dict()
    assert data["license"] == entry.license and data["library_name"] == "surgenet"
    assert data["pipeline_tag"] == "image-segmentation" and data["base_model"] == entry.repo_id
    assert data["datasets"] == ["SurgeNet"] and "segmentation" in data["tags"]
    assert card.text.lstrip().startswith("# surgenet-pvtv2 for semantic segmentation")
