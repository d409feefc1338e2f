"""``surgenet evaluate``: metrics of a saved task model on labelled data, against hand-worked values
and an independent computation, written as JSON, a table and (segmentation) a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.evaluation import metrics


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


def test_precision_recall_curve_by_hand_and_ap_is_its_sum():
    # Ranked: 0.9 pos | 0.8 neg, 0.8 pos (tied: one threshold) | 0.3 neg.
    recall, precision = metrics.precision_recall_curve([0.8, 0.9, 0.3, 0.8], [0, 1, 0, 1])
    np.testing.assert_allclose(recall, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 0.5])
    ap = metrics.average_precision(np.array([0.8, 0.9, 0.3, 0.8])[:, None], np.array([0, 1, 0, 1], bool)[:, None])
    assert ap[0] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert metrics.precision_recall_curve([0.2, 0.4], [0, 0]) is None  # no positives: no curve


def test_figures_are_written_as_pictures(tmp_path):
    from surgenet.evaluation import plots as eval_plots

    rng = np.random.default_rng(0)
    targets = rng.random((40, 3)) < 0.3
    targets[:, 2] = False  # a label that never occurs is listed, not drawn
    probabilities = np.clip(targets * 0.4 + rng.random((40, 3)) * 0.6, 0, 1)
    eval_plots.pr_curves(probabilities, targets, ["a", "b", "never"], tmp_path / "pr.png", threshold=0.5)
    truth = np.repeat([0, 1, 2], 20)
    eval_plots.phase_timeline({"v1": (np.roll(truth, 3), truth), "v2": (truth[:30], truth[:30])},
                              ["p0", "p1", "p2"], tmp_path / "timeline.png", title="phases")
    eval_plots.confusion_figure(np.array([[90, 10], [0, 0]]), ["background", "tool"], tmp_path / "cm.png")
    for name, min_height in (("pr.png", 300), ("timeline.png", 250), ("cm.png", 150)):
        picture = Image.open(tmp_path / name)
        assert picture.format == "PNG" and picture.height >= min_height and picture.width >= 300
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files


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
    assert Image.open(tmp_path / "eval" / "confusion.png").format == "PNG"
    assert "confusion.png, contact_sheet.png" in printed


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


def test_surgenet_evaluate_cvs_scores_and_curves_match_an_independent_computation(tmp_path, capsys):
    import surgenet
    from surgenet.cli import main

    rng = np.random.default_rng(1)
    root = tmp_path / "cvs"
    (root / "images").mkdir(parents=True)
    rows = ["file,video,c1,c2,c3"]
    votes = np.array([[0, 0.3333, 1], [0.6667, 1, 0], [1, 0, 0.6667], [0, 0, 0], [0.3333, 0.6667, 1], [1, 1, 0]])
    for i, v in enumerate(votes):
        name = f"{i + 1}_{100 * (i + 1)}.jpg"
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / "images" / name)
        rows.append(f"{name},{i + 1}," + ",".join(f"{x:.4f}" for x in v))
    (root / "cvs.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    model = surgenet.load_model("surgenetxl-caformer", task="cvs", pretrained=False, input_size=[3, 32, 32])
    model.save_pretrained(tmp_path / "model")
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", f"endoscapes:{root}",
                 "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    transform = surgenet.create_transform(model)
    with torch.no_grad():
        x = torch.stack([transform(np.asarray(Image.open(root / "images" / f"{i + 1}_{100 * (i + 1)}.jpg")))
                         for i in range(len(votes))])
        probabilities = torch.sigmoid(model.eval()(x)).numpy()
    expected = metrics.cvs_metrics(probabilities, votes >= 0.5)
    np.testing.assert_allclose(result["ap"], expected["ap"], rtol=1e-6)
    assert result["mAP"] == pytest.approx(expected["mAP"], rel=1e-6)
    assert Image.open(tmp_path / "eval" / "pr_curves.png").format == "PNG"
    assert "pr_curves.png" in capsys.readouterr().out


def test_phase_scores_hand_each_videos_sequence_to_the_timeline(tmp_path):
    import surgenet
    from surgenet.train.data.labelled import PhaseVideo
    from surgenet.evaluation.plots import phase_timeline
    from surgenet.train.task_eval import phase_scores

    rng = np.random.default_rng(2)
    videos = []
    for name, length in (("v1", 7), ("v2", 5)):
        frames = []
        for i in range(length):
            frames.append(tmp_path / f"{name}_{i}.png")
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(frames[-1])
        videos.append(PhaseVideo(name, frames, rng.integers(0, 3, length)))
    torch.manual_seed(0)
    model = surgenet.load_model("surgenetxl-caformer", task="phase", num_classes=3, pretrained=False,
                                input_size=[3, 32, 32]).eval()
    sequences: dict = {}
    scores = phase_scores(model, videos, surgenet.create_transform(model), batch_size=4, sequences=sequences)
    assert list(sequences) == ["v1", "v2"]
    for video in videos:
        pred, truth = sequences[video.name]
        np.testing.assert_array_equal(truth, video.phases)
        assert pred.shape == truth.shape and pred.min() >= 0 and pred.max() < 3
        assert scores["videos"][video.name]["accuracy"] == pytest.approx(float(np.mean(pred == truth)))
    pooled = sum(int(np.sum(p == t)) for p, t in sequences.values()) / 12
    assert scores["frame_accuracy"] == pytest.approx(pooled)
    assert Image.open(phase_timeline(sequences, ["a", "b", "c"], tmp_path / "t.png")).format == "PNG"
