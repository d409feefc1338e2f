"""The README and the model cards say what the registry says, and the README's commands exist."""

from __future__ import annotations

from pathlib import Path

import yaml

from surgenet.registry import REGISTRY
from surgenet.zoo_cards import write_zoo_cards, zoo_table_markdown

REPO = Path(__file__).resolve().parents[1]


def test_model_cards_match_the_registry():
    assert write_zoo_cards(REPO / "model_cards", check=True) == [], "run `surgenet cards` and commit"


def test_each_card_has_hugging_face_metadata_from_its_entry():
    for name, entry in REGISTRY.items():
        text = (REPO / "model_cards" / f"{name}.md").read_text()
        header = yaml.safe_load(text.split("---")[1])
        assert header["license"] == entry.license
        assert header["library_name"] == "surgenet"
        assert "surgery" in header["tags"]
        assert entry.filename in text and entry.repo_id in text


def test_a_stale_card_is_detected(tmp_path):
    write_zoo_cards(tmp_path)
    card = tmp_path / "surgenet-pvtv2.md"
    card.write_text(card.read_text().replace("PVTv2", "PVTv3"))
    assert write_zoo_cards(tmp_path, check=True) == ["surgenet-pvtv2"]


def test_readme_zoo_table_matches_the_registry():
    assert zoo_table_markdown() in (REPO / "README.md").read_text()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    head = (REPO / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head
    assert "make test" in (REPO / ".ci" / "run").read_text()
