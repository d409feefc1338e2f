"""Fine-tuning that copes with real data: the loss against its formula, aligned augmentations,
confusion-matrix validation, early stopping, exact resume, the tools task, and a short run on real
Endoscapes frames (skipped without ../shared/data)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.evaluation import metrics
from surgenet.train.finetune import FinetuneConfig, finetune, lr_factors
from surgenet.train.finetune_tasks import label_pos_weight
from surgenet.train.losses import class_weights_from_pixels, dice_ce_loss, soft_dice_loss
from surgenet.train.seg_augment import SegmentationAugment
from tests.helpers.killed import finetune_killed_saving_epoch
from tests.helpers.paths import SHARED_DATA

SHARED = SHARED_DATA


# -- the loss ---------------------------------------------------------------------------------------------------------
def test_soft_dice_and_ce_against_the_formula():
    # Two pixels, three classes; pixel 1 ignored; class 2 absent from the target.
    logits = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 3.0]]]])  # (1, 3, 1, 3)
    target = torch.tensor([[[0, 255, 1]]])
    p = np.exp([[2, 0, 0], [1, 0, 3]], dtype=np.float64)  # softmax of pixels 0 and 2, classes in columns
    p /= p.sum(1, keepdims=True)
    # dice_c = (2 sum p_c y_c + 1) / (sum p_c + sum y_c + 1) over the valid pixels; classes 0 and 1 present.
    dice0 = (2 * p[0, 0] + 1) / (p[0, 0] + p[1, 0] + 1 + 1)
    dice1 = (2 * p[1, 1] + 1) / (p[0, 1] + p[1, 1] + 1 + 1)
    expected_dice = 1 - (dice0 + dice1) / 2
    expected_ce = -(np.log(p[0, 0]) + np.log(p[1, 1])) / 2
    assert float(soft_dice_loss(logits, target)) == pytest.approx(expected_dice, rel=1e-6)
    assert float(dice_ce_loss(logits, target)) == pytest.approx(expected_ce + expected_dice, rel=1e-6)
    assert float(dice_ce_loss(logits, target, dice_weight=0)) == pytest.approx(expected_ce, rel=1e-6)
    # Nothing valid: zero, and still differentiable.
    empty = dice_ce_loss(logits.clone().requires_grad_(), torch.full((1, 1, 3), 255))
    assert float(empty) == 0.0
    # Class weights: the weighted mean of the per-pixel losses, sum w[y] * nll / sum w[y].
    w = torch.tensor([0.5, 4.0, 2.0])
    expected_wce = -(0.5 * np.log(p[0, 0]) + 4.0 * np.log(p[1, 1])) / (0.5 + 4.0)
    got = dice_ce_loss(logits, target, dice_weight=0, class_weight=w)
    assert float(got) == pytest.approx(expected_wce, rel=1e-6)


def test_class_weights_from_pixel_counts_by_hand():
    # Shares 0.6 / 0.3 / 0.1 / 0 (class 3 never labelled).
    median = class_weights_from_pixels([600, 300, 100, 0], "median-frequency")
    # median(0.6, 0.3, 0.1) / f = 0.5, 1, 3; scaled by 1 / (0.6*0.5 + 0.3*1 + 0.1*3) = 1 / 0.9.
    np.testing.assert_allclose(median, [0.5 / 0.9, 1 / 0.9, 3 / 0.9, 0.0], rtol=1e-12)
    # Shares 0.9 / 0.1: 1/sqrt(f) is in ratio 1 : 3; the mean weight of a pixel is 1.
    sqrt = class_weights_from_pixels([900, 100], "inverse-sqrt")
    assert sqrt[1] / sqrt[0] == pytest.approx(3.0)
    assert 0.9 * sqrt[0] + 0.1 * sqrt[1] == pytest.approx(1.0)
    assert class_weights_from_pixels([900, 100], "none") is None
    with pytest.raises(ValueError, match="inverse-sqrt"):
        class_weights_from_pixels([1, 1], "inverse")


def test_segmentation_task_weighs_classes_by_the_training_masks(tmp_path):
    from surgenet.train.finetune_tasks import SegmentationTask

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    # Two 4x4 frames: class 0 on 24 pixels, class 1 on 6, class 2 on 2 (of 32; none ignored).
    masks = [np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]
    masks[0][0, :] = 1
    masks[1][0, :2] = 1
    masks[1][3, 3] = 2
    masks[1][2, 3] = 2
    for i, mask in enumerate(masks):
        Image.new("RGB", (4, 4)).save(tmp_path / "images" / f"f{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"f{i}.png")
    cfg = FinetuneConfig(task="segmentation", train=str(tmp_path), num_classes=3)
    weight = SegmentationTask(cfg).class_weight.numpy()
    shares = np.array([24, 6, 2]) / 32
    expected = 1 / np.sqrt(shares)
    np.testing.assert_allclose(weight, expected / (shares * expected).sum(), rtol=1e-6)
    assert SegmentationTask(FinetuneConfig(task="segmentation", train=str(tmp_path), num_classes=3,
                                           class_weighting="none")).class_weight is None


def test_balanced_positive_weights_by_hand():
    class Labels:
        class_names = ["rare", "never", "soft"]
        labels = np.array([[1, 0, 1 / 3], [0, 0, 1 / 3], [0, 0, 0], [0, 0, 1 / 3]], dtype=np.float32)

    weights = label_pos_weight(Labels, "balanced")
    # p = 1/4 -> 3; never positive -> 1; soft votes p = 1/4 -> 3.
    np.testing.assert_allclose(weights.numpy(), [3.0, 1.0, 3.0], rtol=1e-6)
    assert label_pos_weight(Labels, "none") is None
    # With these weights the positives and the negatives of a label carry equal total weight under
    # the binary cross-entropy: 3 * (one positive) == 1 * (three negatives) for "rare".
    logits, targets = torch.zeros(4, 3), torch.from_numpy(Labels.labels)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights,
                                                                reduction="none")
    assert float(loss[:, 0].sum()) == pytest.approx(float(np.log(2) * (3 * 1 + 3)), rel=1e-6)


def test_warmup_cosine_schedule():
    f = lr_factors(20, 0.1)
    assert len(f) == 20
    np.testing.assert_allclose(f[:2], [1 / 3, 2 / 3])  # linear ramp over 2 steps, then the peak
    assert f[2] == pytest.approx(1.0) and f[-1] > 0.01 and np.all(np.diff(f[2:]) < 0)


# -- augmentations ----------------------------------------------------------------------------------------------------
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)  # class = the dominant channel


def _painted_frame(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame whose colour encodes its mask: blocks of the three classes, so the mask can be read
    back from the pixels after any geometric transform."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.int64)
    for _ in range(6):
        y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
        mask[y:y + rng.integers(10, height // 2), x:x + rng.integers(10, width // 2)] = rng.integers(1, 3)
    return COLOURS[mask], mask


@pytest.mark.parametrize("shape", [(90, 160), (120, 80)])  # wide and tall frames
def test_augmented_views_keep_image_and_mask_aligned(shape):
    image, mask = _painted_frame(*shape, seed=shape[0])
    augment = SegmentationAugment((48, 48), scale=(0.3, 1.0), jitter=0.2)
    flips = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        params = augment.sample(*shape, np.random.default_rng(seed))
        flips += params.flip
        x, m = augment(Image.fromarray(image), mask, rng)
        assert x.shape == (3, 48, 48) and m.shape == (48, 48) and m.dtype == np.int64
        read_back = x.argmax(0).numpy()  # jitter scales the channels alike: the dominant one stays
        # Only pixels whose 3x3 neighbourhood is one class: bilinear resizing blends colours at edges.
        padded = np.pad(m, 1, mode="edge")
        interior = np.all([padded[1 + dy:49 + dy, 1 + dx:49 + dx] == m for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 0)
        assert interior.mean() > 0.5
        np.testing.assert_array_equal(read_back[interior], m[interior])
    assert 0 < flips < 8  # both orientations were exercised


def test_augment_is_a_function_of_seed_epoch_index():
    image, mask = _painted_frame(60, 100, 0)
    augment = SegmentationAugment((32, 32))
    a = augment(image, mask, np.random.default_rng([0, 1, 2]))
    b = augment(image, mask, np.random.default_rng([0, 1, 2]))
    c = augment(image, mask, np.random.default_rng([0, 2, 2]))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# -- validation by confusion matrix ----------------------------------------------------------------------
def test_confusion_matrix_sum_equals_metrics_on_all_masks():
    rng = np.random.default_rng(3)
    preds = [rng.integers(0, 4, (20, 30)) for _ in range(5)]
    targets = [np.where(rng.random((20, 30)) < 0.1, 255, rng.integers(0, 4, (20, 30))) for _ in range(5)]
    targets[0][targets[0] == 3] = 2  # class 3 ...
    cm = sum(metrics.confusion_matrix(p, t, 4, ignore_index=255) for p, t in zip(preds, targets))
    summed = metrics.segmentation_metrics_from_confusion(cm)
    whole = metrics.segmentation_metrics(np.stack(preds), np.stack(targets), 4, ignore_index=255)
    np.testing.assert_allclose(summed["iou"], whole["iou"])
    np.testing.assert_allclose(summed["dice"], whole["dice"])
    assert summed["mean_iou"] == pytest.approx(whole["mean_iou"])
    # Hand-worked: one 2x2 frame, prediction [[0,1],[1,1]] vs target [[0,0],[1,1]].
    hand = metrics.segmentation_metrics_from_confusion(np.array([[1, 1], [0, 2]]))
    np.testing.assert_allclose(hand["iou"], [1 / 2, 2 / 3])
    np.testing.assert_allclose(hand["dice"], [2 / 3, 4 / 5])


# -- training behaviour on tiny synthetic sets ------------------------------------------------------------
TOOLS = ["grasper", "hook"]


def _cholect50(root: Path, videos: dict[str, int], seed: int) -> Path:
    """A CholecT50-format set: tool 0 present <-> a bright red left half, tool 1 <-> a bright blue right half."""
    rng = np.random.default_rng(seed)
    (root / "labels").mkdir(parents=True)
    categories = {"instrument": {str(i): n for i, n in enumerate(TOOLS)}, "phase": {"0": "a", "1": "b"},
                  "triplet": {"0": "grasper,grasp,gallbladder"}, "verb": {"0": "grasp"}, "target": {"0": "gallbladder"}}
    for name, frames in videos.items():
        (root / "videos" / name).mkdir(parents=True)
        annotations = {}
        for f in range(frames):
            present = [bool(rng.random() < 0.5), bool(rng.random() < 0.5)]
            image = (rng.random((32, 32, 3)) * 60).astype(np.uint8)
            if present[0]:
                image[:, :16, 0] = 230
            if present[1]:
                image[:, 16:, 2] = 230
            Image.fromarray(image).save(root / "videos" / name / f"{f:06d}.png")
            phase = int(f >= frames // 2)
            rows = [[0, t, 1, 0.1, 0.1, 0.2, 0.2, 0, 0, 1, -1, -1, -1, -1, phase] for t in (0, 1) if present[t]]
            annotations[str(f)] = rows or [[-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, phase]]
        (root / "labels" / f"{name}.json").write_text(json.dumps({"categories": categories,
                                                                    "annotations": annotations}))
    return root


def test_tools_task_learns_separable_presence(tmp_path):
    import surgenet

    data = _cholect50(tmp_path / "c50", {"V1": 24, "V2": 12}, 0)
    cfg = FinetuneConfig(task="tools", model="surgenetxl-caformer", pretrained=False, train=f"cholect50:{data}#V1",
                         val=f"cholect50:{data}#V2", image_size=32, epochs=6, batch_size=8, lr=1e-3,
                         num_workers=0, patience=0)
    torch.manual_seed(0)
    best = finetune(cfg, tmp_path / "out")
    # Chance (random scores) gives AP about the prevalence, ~0.5 here; separable classes reach ~1.
    assert best["val_mAP"] > 0.9, best
    model = surgenet.load_model(tmp_path / "out" / "best")
    assert model.task == "tools" and model.class_names == TOOLS


def test_early_stopping_stops_when_the_score_stalls(tmp_path):
    data = _cholect50(tmp_path / "c50", {"V1": 8, "V2": 8}, 1)
    # lr 0: the model never changes, so no epoch after the first beats it.
    cfg = FinetuneConfig(task="tools", model="surgenetxl-caformer", pretrained=False, train=f"cholect50:{data}#V1",
                         val=f"cholect50:{data}#V2", image_size=32, epochs=6, batch_size=8, lr=0.0, backbone_lr=0.0,
                         num_workers=0, patience=2)
    best = finetune(cfg, tmp_path / "out")
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and best["epoch"] == 1
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _seg_folder(root: Path, n: int, seed: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = _painted_frame(40, 64, seed + i)
        mask[:3] = 255
        mask[-4:, -4:] = 9  # an id beyond --num-classes 3: read as ignore
        Image.fromarray(image).save(root / "images" / f"f{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"f{i}.png")
    return root


def test_segmentation_resume_is_exact_and_unknown_ids_are_ignored(tmp_path, monkeypatch):
    data = _seg_folder(tmp_path / "seg", 4, 0)
    cfg = FinetuneConfig(task="segmentation", model="surgenetxl-caformer", pretrained=False, num_classes=3,
                         train=str(data), val=str(data), image_size=32, epochs=2, batch_size=2, num_workers=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune(cfg, tmp_path / "straight")
    assert any("read as 255" in str(w.message) for w in caught)  # id 9 named in a warning, not a crash
    finetune_killed_saving_epoch(cfg, tmp_path / "resumed", 2, monkeypatch)
    finetune(cfg, tmp_path / "resumed", resume=True)  # epoch 2 again, from last.pth of epoch 1
    a, b = _state(tmp_path / "straight" / "last.pth"), _state(tmp_path / "resumed" / "last.pth")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and len(log[0]["val_iou"]) == 3


# -- real frames ------------------------------------------------------------------------------------------------------
def _real_subset(root: Path) -> Path:
    """Four Endoscapes training frames and the validation frame whose mask holds the undocumented id 7."""
    src = SHARED / "endoscapes"
    if not (src / "train" / "images").is_dir():
        pytest.skip(f"real data {src} is absent (../shared/data, see its README)")
    stems = [p.stem for p in sorted((src / "train" / "images").glob("*.jpg"))[:4]]
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pairs = [(src / "train", s) for s in stems] + [(src / "val", "153_32700")]
    rows = ["file,video,c1,c2,c3"]
    for split, stem in pairs:
        shutil.copy(split / "images" / f"{stem}.jpg", root / "images")
        shutil.copy(split / "masks" / f"{stem}.png", root / "masks")
        rows.append(f"{stem}.jpg,{stem.split('_')[0]},0,0,0")
    (root / "cvs.csv").write_text("\n".join(rows) + "\n")
    return root


def test_short_fine_tuning_on_real_frames_lowers_the_loss(tmp_path):
    import surgenet
    from surgenet.train.data.labelled import SegmentationSamples
    from surgenet.train.run_state import seed_everything
    from surgenet.train.finetune import build_model
    from surgenet.train.formats import open_dataset

    data = _real_subset(tmp_path / "endoscapes")
    cfg = FinetuneConfig(task="segmentation", model="surgenetxl-caformer", pretrained=False, num_classes=7,
                         train=f"endoscapes:{data}", image_size=64, epochs=4, batch_size=2, num_workers=0)
    with pytest.warns(UserWarning, match="153_32700"):
        source = open_dataset(f"endoscapes:{data}", "segmentation")
    assert (source[4][1] == 7).sum() == 0  # the id-7 pixels are ignore (255)

    def loss_of(model) -> float:
        samples = SegmentationSamples(source, surgenet.create_transform(model))
        x = torch.stack([samples[i][0] for i in range(len(samples))])
        masks = torch.stack([torch.from_numpy(np.asarray(Image.fromarray(samples[i][1].numpy().astype(np.uint8))
                                                         .resize((64, 64), Image.Resampling.NEAREST), np.int64))
                             for i in range(len(samples))])
        with torch.no_grad():
            return float(dice_ce_loss(model.eval()(x), masks))

    seed_everything(cfg.seed)
    before = loss_of(build_model(cfg, 7))  # the initial weights of the run (same seed)
    finetune(cfg, tmp_path / "out")
    after = loss_of(surgenet.load_model(tmp_path / "out" / "best"))
    assert after < 0.8 * before, (before, after)
