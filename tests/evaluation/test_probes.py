"""kNN and linear-probe evaluation of a frozen backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.exceptions import InputError
from surgenet.evaluation.probes import (accuracy_report, knn_classify, knn_evaluate, linear_probe, probe_evaluate,
                                       read_labelled)


def test_knn_votes_with_temperature_weights():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # The query is closest to class 1's single point, but with k=3 and a high temperature the
    # two class-0 neighbours outvote it; with a low temperature the nearest one wins.
    query = torch.tensor([[0.6, 0.8]])
    assert knn_classify(train, labels, query, 2, k=3, temperature=100.0).tolist() == [0]
    assert knn_classify(train, labels, query, 2, k=3, temperature=0.01).tolist() == [1]
    assert knn_classify(train, labels, query, 2, k=1).tolist() == [1]


def test_linear_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 3
    labels = torch.arange(3).repeat_interleave(20)
    feats = centres[labels] + torch.randn(60, 16, generator=g)
    pred = linear_probe(feats[::2], labels[::2], feats[1::2], 3, epochs=100)
    assert accuracy_report(pred, labels[1::2], 3)["top1"] > 0.95


def test_linear_probe_leaves_the_global_random_stream_alone():
    # It runs inside pretraining (periodic evaluation): a draw there would change the drop-path masks.
    feats, labels = torch.randn(10, 4), torch.arange(2).repeat(5)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    linear_probe(feats, labels, feats, 2, epochs=3)
    assert torch.equal(torch.get_rng_state(), before)


def test_accuracy_report():
    rep = accuracy_report(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1]), 2)
    assert rep == {"top1": 0.75, "balanced_accuracy": 0.75}


def _labelled_folder(root: Path) -> Path:
    for label, value in (("dark", 20), ("bright", 230)):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            noise = np.random.default_rng(i).integers(0, 20, (40, 40, 3))
            Image.fromarray((value - 10 + noise).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def test_labelled_formats_and_knn_on_a_backbone(tmp_path):
    import surgenet

    folder = _labelled_folder(tmp_path / "train")
    sets = read_labelled(folder)
    assert sets.classes == ["bright", "dark"] and sets.labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "val.csv").write_text("image,label\ntrain/dark/0.png,dark\ntrain/bright/1.png,bright\n")
    val = read_labelled(tmp_path / "val.csv", classes=sets.classes)
    assert val.labels.tolist() == [1, 0]
    (tmp_path / "bad.csv").write_text("image,label\ntrain/dark/0.png,purple\n")
    with pytest.raises(InputError, match="purple"):
        read_labelled(tmp_path / "bad.csv", classes=sets.classes)
    torch.manual_seed(0)
    backbone = surgenet.load_backbone("surgenetxl-caformer", pretrained=False)
    result = knn_evaluate(backbone, folder, tmp_path / "val.csv", image_size=32, k=3)
    assert result["top1"] == 1.0  # flat dark vs flat bright frames are far apart even at random weights


def _random_teacher(folder: Path) -> Path:
    """A randomly initialised SurgeNetXL network in the zoo's format, as ``surgenet-train`` exports it."""
    from surgenet.zoo.backbones import create_network
    from surgenet.train.teacher_export import export_teacher

    torch.manual_seed(0)
    return export_teacher(create_network("caformer_s18_surgenet"), "surgenetxl-caformer", folder)


def _images_through_the_stem(run) -> tuple[int, object]:
    """How many images enter the network's first convolution while ``run()`` runs, whoever calls it."""
    seen = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            seen.append(inputs[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        result = run()
    finally:
        handle.remove()
    return sum(seen), result


def test_evaluate_command_runs_both_probes_on_one_feature_pass(tmp_path, capsys):
    import json

    from surgenet.train.cli import main

    folder = _labelled_folder(tmp_path / "train")  # 6 frames, used as train and val set
    weights = _random_teacher(tmp_path / "teacher")
    args = ["evaluate", "--model", "surgenetxl-caformer", "--weights", str(weights), "--train", str(folder),
            "--val", str(folder), "--image-size", "32", "--k", "3", "--epochs", "20"]
    images, code = _images_through_the_stem(lambda: main([*args, "--method", "both"]))
    assert code == 0
    assert images == 6 + 6  # each train and val frame once: kNN and the linear probe share the features
    both = json.loads(capsys.readouterr().out)
    assert set(both) == {"knn", "linear"}
    assert both["knn"]["top1"] == 1.0  # dark vs bright frames: the val frames are the train frames


def test_probe_evaluate_refuses_an_unknown_method_before_any_work(tmp_path):
    folder = _labelled_folder(tmp_path / "train")
    with pytest.raises(InputError, match="knn, linear, both"):
        probe_evaluate(torch.nn.Identity(), folder, folder, "svm", image_size=32)  # no network needed to refuse
