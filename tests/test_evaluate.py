"""``surgenet evaluate``: metrics of a saved task model on labelled data, against hand-worked values
and an independent computation, written as JSON, a table and (segmentation) a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet import metrics


def test_multilabel_map_by_hand():
    # Tool A: scores 0.9 (pos), 0.8 (neg), 0.3 (pos), 0.1 (neg): precision 1 at recall 1/2, 2/3 at recall 1.
    # Tool B: never present -> NaN, left out of the mean. Tool C: scores tie -> one threshold, AP = prevalence.
    scores = np.array([[0.9, 0.2, 0.5], [0.8, 0.1, 0.5], [0.3, 0.7, 0.5], [0.1, 0.4, 0.5]])
    targets = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]], bool)
    m = metrics.multilabel_metrics(scores, targets)
    ap_a = 0.5 * 1.0 + 0.5 * (2 / 3)
    assert m["ap"][0] == pytest.approx(ap_a) and np.isnan(m["ap"][1]) and m["ap"][2] == pytest.approx(0.25)
    assert m["mAP"] == pytest.approx((ap_a + 0.25) / 2)
    # Tool A at 0.5: predicted [1, 1, 0, 0] -> sensitivity 1/2, specificity 1/2.
    assert m["balanced_accuracy"][0] == pytest.approx(0.5)


def _folder(root: Path, n: int = 3) -> Path:
    """images/ + masks/ + classes.txt: left half class 1, a corner ignored, the rest 0 (40x60 frames)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ntool\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        image = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
        mask = np.zeros((40, 60), np.uint8)
        mask[:, : 20 + 5 * i] = 1
        mask[:4, -6:] = 255
        Image.fromarray(image).save(root / "images" / f"f{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"f{i}.png")
    return root


def test_surgenet_evaluate_writes_json_table_and_contact_sheet(tmp_path, capsys):
    import surgenet
    from surgenet.cli import main

    data = _folder(tmp_path / "data")
    torch.manual_seed(0)
    model = surgenet.load_model("surgenetxl-caformer", task="segmentation", num_classes=2, pretrained=False,
                                input_size=[3, 32, 32], class_names=["background", "tool"])
    model.save_pretrained(tmp_path / "model")
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--out",
                 str(tmp_path / "eval"), "--frames", "2"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    # Independently: the model's prediction per frame at the frame's size, scored on all frames at once.
    transform = surgenet.create_transform(model)
    preds, targets = [], []
    model.eval()
    for i in range(3):
        image = np.asarray(Image.open(data / "images" / f"f{i}.png"))
        with torch.no_grad():
            logits = model(transform(image)[None])
        full = torch.nn.functional.interpolate(logits, size=(40, 60), mode="bilinear", align_corners=False)
        preds.append(full[0].argmax(0).numpy())
        targets.append(np.asarray(Image.open(data / "masks" / f"f{i}.png")))
    expected = metrics.segmentation_metrics(np.stack(preds), np.stack(targets), 2, ignore_index=255)
    np.testing.assert_allclose(result["iou"], expected["iou"], rtol=1e-9)
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert result["frames"] == 3 and result["class_names"] == ["background", "tool"]
    assert np.asarray(result["confusion"]).sum() == 3 * (40 * 60 - 24)  # every labelled pixel, once

    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert "| tool |" in table and f"{expected['mean_iou']:.3f}" in table
    assert "tool" in printed and f"{expected['mean_iou']:.3f}" in printed
    sheet = Image.open(tmp_path / "eval" / "contact_sheet.png")
    assert sheet.width == 3 * 320 + 8 and sheet.height > 2 * round(320 * 40 / 60)  # 3 panels, 2 rows


def test_evaluate_refuses_data_with_more_classes_than_the_model(tmp_path, capsys):
    import surgenet
    from surgenet.cli import main

    data = _folder(tmp_path / "data")
    (data / "classes.txt").write_text("background\ntool\nextra\n")
    model = surgenet.load_model("surgenetxl-caformer", task="segmentation", num_classes=2, pretrained=False,
                                input_size=[3, 32, 32])
    model.save_pretrained(tmp_path / "model")
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", f"folder:{data}",
                 "--out", str(tmp_path / "eval")]) == 2
    assert "3 segmentation classes" in capsys.readouterr().err
