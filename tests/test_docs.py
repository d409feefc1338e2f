"""The README, the docs site and the model cards say what the registry says, the site builds strictly,
and every command the README and the docs show exists."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from surgenet.zoo.registry import REGISTRY
from surgenet.zoo.card_files import write_zoo_cards, zoo_table_markdown
from tests.helpers.paths import REPO



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


# -- the documentation site and the commands it shows -------------------------------------------------------------

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs" / "pages").glob("*.md"))]


def test_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (pip install '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "docs" / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "surgenet-train finetune" in cli and "surgenet predict" in cli  # generated from the parsers
    zoo = (tmp_path / "site" / "zoo" / "index.html").read_text()
    assert all(name in zoo for name in REGISTRY)


def _shell_commands(path: Path) -> list[str]:
    """The command lines of a page's ``bash`` blocks, continuation lines joined, comments cut."""
    commands, block, pending = [], False, ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            block = line.strip() == "```bash" and not block
            continue
        if not block:
            continue
        line = pending + re.sub(r"\s+#.*$", "", line).strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def _command_tree():
    from surgenet.cli import build_parser as surgenet_parser
    from surgenet.train.cli import build_parser as train_parser

    trees = {"surgenet": surgenet_parser(), "surgenet-train": train_parser()}
    try:
        from surgenet_export.cli import build_parser as export_parser

        trees["surgenet-export"] = export_parser()
    except ImportError:  # the export extra is not installed
        pass
    return trees


def _options(parser: argparse.ArgumentParser) -> tuple[set[str], dict[str, argparse.ArgumentParser]]:
    flags = {s for a in parser._actions for s in a.option_strings}
    subs = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    return flags, dict(subs)


def _check_cli(words: list[str], parser: argparse.ArgumentParser) -> list[str]:
    flags, subs = _options(parser)
    if subs and words and not words[0].startswith("-"):
        if words[0] not in subs:
            return [f"no subcommand {words[0]!r}"]
        return _check_cli(words[1:], subs[words[0]])
    return [f"no option {w.split('=')[0]}" for w in words if w.startswith("--") and w.split("=")[0] not in flags]


def _benchmark_flags(script: Path) -> str:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, f"{script.name} --help failed: {done.stderr[-800:]}"
    return done.stdout


def test_every_command_of_the_readme_and_the_docs_exists():
    """Each ``surgenet``/``surgenet-train``/``surgenet-export`` line names real subcommands and
    options of the parsers, each ``python benchmarks/X.py`` line real options of the script, and
    each ``make`` target exists: the pages cannot show a command that the code no longer has."""
    trees, helps, problems = _command_tree(), {}, []
    targets = set(re.findall(r"^([a-z]+):", (REPO / "Makefile").read_text(), flags=re.M))
    checked = 0
    for page in DOC_FILES:
        for command in _shell_commands(page):
            words = shlex.split(command.replace("[", "").replace("]", ""))
            if words[:3] == ["torchrun"] or (words and words[0] == "torchrun"):
                words = ["surgenet-train", *words[words.index("surgenet.train") + 1:]] if "surgenet.train" in words else []
            if not words:
                continue
            if words[0] == "surgenet" and len(words) > 1 and f"surgenet-{words[1]}" in trees:
                words = [f"surgenet-{words[1]}", *words[2:]]  # `surgenet train ...` is `surgenet-train ...`
            head = words[0]
            if head in trees:
                issues = _check_cli(words[1:], trees[head])
            elif head == "python" and len(words) > 1 and words[1].startswith("benchmarks/"):
                script = REPO / words[1]
                if not script.is_file():
                    issues = [f"no script {words[1]}"]
                else:
                    helps.setdefault(script, _benchmark_flags(script))
                    issues = [f"no option {w}" for w in words[2:] if w.startswith("--") and
                              re.search(rf"{re.escape(w.split('=')[0])}\b", helps[script]) is None]
            elif head == "make":
                issues = [f"no make target {t}" for t in words[1:] if "=" not in t and t not in targets]
            else:
                continue
            checked += 1
            problems += [f"{page.relative_to(REPO)}: `{command}`: {issue}" for issue in issues]
    assert checked > 30, checked
    assert not problems, "\n".join(problems)


def test_the_command_checker_catches_a_renamed_option():
    parser = _command_tree()["surgenet"]
    assert _check_cli(["predict", "x.mp4", "--out", "o/"], parser) == []
    assert _check_cli(["predict", "x.mp4", "--outdir", "o/"], parser) == ["no option --outdir"]
    assert _check_cli(["predikt", "x.mp4"], parser) == ["no subcommand 'predikt'"]
