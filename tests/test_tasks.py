"""Facts written once: the task names, the agreement of two outputs, the table printer, bf16 detection."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from surgenet.io.table import format_table
from surgenet.evaluation.metrics import decision_agreement
from surgenet.tasks import MULTI_LABEL_TASKS, TASKS


def _task_choices(parser: argparse.ArgumentParser, *subcommand: str) -> tuple[str, ...]:
    for name in subcommand:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return tuple(next(a for a in parser._actions if "--task" in a.option_strings).choices)


def test_every_task_has_a_model_class_and_the_command_lines_offer_them():
    from surgenet.cli import build_parser
    from surgenet.models.base import TASK_CLASSES

    assert set(TASKS) <= set(TASK_CLASSES) and set(MULTI_LABEL_TASKS) <= set(TASKS)
    assert _task_choices(build_parser(), "predict") == TASKS


def test_models_datasets_and_fine_tuning_read_the_one_task_list():
    import surgenet.models
    from surgenet.train import formats
    from surgenet.train.finetune_tasks import TASKS as FINETUNE_TASKS

    assert surgenet.models.TASKS is TASKS and formats.TASKS is TASKS
    assert set(FINETUNE_TASKS) == set(TASKS)


def test_the_ignore_label_and_the_image_suffixes_are_defined_once():
    # Values equal by chance would pass an equality test: read where each fact is assigned.
    import re
    from pathlib import Path

    import surgenet

    root = Path(surgenet.__file__).parent
    sources = {p: p.read_text() for p in root.rglob("*.py")}
    for fact in ("IGNORE_INDEX", "IMAGE_EXTENSIONS", "IMAGE_SUFFIXES"):
        homes = sorted(str(p.relative_to(root)) for p, text in sources.items()
                       if re.search(rf"^{fact}\s*(:[^=]+)?=", text, flags=re.M))
        assert len(homes) <= 1, f"{fact} is assigned in {homes}"
    assert not any("IMAGE_SUFFIXES" in text for text in sources.values())


def test_export_command_offers_the_same_tasks():
    pytest.importorskip("onnx")
    from surgenet_export.cli import build_parser

    assert _task_choices(build_parser()) == TASKS


def test_decision_agreement_by_hand():
    # Segmentation: classes on axis 1; two of the four pixels change their argmax.
    ref = np.zeros((1, 3, 2, 2))
    ref[0, 0] = 1.0
    out = ref.copy()
    out[0, 2, 0, :] = 2.0
    assert decision_agreement(ref, out, "segmentation") == 0.5
    # Phase: classes on the last axis; one frame of three changes.
    ref, out = np.eye(3), np.eye(3)
    out[1] = [0.0, 0.4, 0.6]
    assert decision_agreement(ref, out, "phase") == pytest.approx(2 / 3)
    # CVS: independent sigmoids, each logit's sign is a decision (argmax would compare criteria).
    ref, out = np.array([[2.0, -1.0, 0.5]]), np.array([[1.0, -3.0, -0.1]])
    assert decision_agreement(ref, out, "cvs") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shapes"):
        decision_agreement(np.zeros(3), np.zeros(4), "phase")


def test_tables_plain_and_markdown():
    rows = [["a", 1.5], ["long name", 22]]
    assert format_table(["name", "x"], rows).splitlines() == [
        "name       x", "---------  ---", "a          1.5", "long name  22"]
    assert format_table(["name", "x"], rows, markdown=True).splitlines() == [
        "| name      | x   |", "|-----------|-----|", "| a         | 1.5 |", "| long name | 22  |"]


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    from surgenet.runtime import cpu as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512f", "avx512bw"})  # AVX-512 without bf16
    assert not devices.cpu_has_native_bf16()
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512f", flag})
        assert devices.cpu_has_native_bf16()
