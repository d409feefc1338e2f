"""Distillation: the loss against its formula, a student that learns its teacher's decisions, the
resumable teacher cache, and the command line's checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.train.distill import DistillConfig, distill
from surgenet.train.distill_cache import FrameSet, TeacherCache
from surgenet.train.distill_loss import soft_kl
from tests.train.test_finetune import SIZE, disc_dataset


# ----------------------------------------------------------------------------- the loss
def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_pixel_kl_is_the_temperature_scaled_formula():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, 4, 3, 5)) * 3, rng.normal(size=(2, 4, 3, 5)) * 3
    valid = rng.random((2, 3, 5)) > 0.3
    for temperature in (1.0, 2.0, 4.0):
        p, q = _softmax(t / temperature, 1), _softmax(s / temperature, 1)
        per_pixel = (p * np.log(p / q)).sum(1)
        expected_all = temperature ** 2 * per_pixel.mean()
        expected_valid = temperature ** 2 * per_pixel[valid].mean()
        got_all = soft_kl(torch.tensor(s), torch.tensor(t), temperature)
        got_valid = soft_kl(torch.tensor(s), torch.tensor(t), temperature, valid=torch.tensor(valid))
        assert got_all.item() == pytest.approx(expected_all, rel=1e-5)
        assert got_valid.item() == pytest.approx(expected_valid, rel=1e-5)
    # no valid pixel: zero, and still differentiable
    s_t = torch.tensor(s, requires_grad=True)
    zero = soft_kl(s_t, torch.tensor(t), 2.0, valid=torch.zeros(2, 3, 5, dtype=torch.bool))
    zero.backward()
    assert zero.item() == 0.0 and s_t.grad is not None
    # the student agreeing with the teacher: zero
    assert soft_kl(torch.tensor(t), torch.tensor(t), 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_reduced_teacher_logits_are_resized_to_the_student():
    """A 1x1 teacher map resized to any size is constant: the KL is that of one distribution per pixel."""
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(1, 3, 4, 4)), rng.normal(size=(1, 3, 1, 1))
    p = _softmax(np.broadcast_to(t, s.shape) / 2.0, 1)
    q = _softmax(s / 2.0, 1)
    expected = 4.0 * (p * np.log(p / q)).sum(1).mean()
    assert soft_kl(torch.tensor(s), torch.tensor(t), 2.0).item() == pytest.approx(expected, rel=1e-5)


def test_multilabel_kl_is_the_binary_formula():
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(5, 3)) * 2, rng.normal(size=(5, 3)) * 2
    temperature = 3.0
    p, q = 1 / (1 + np.exp(-t / temperature)), 1 / (1 + np.exp(-s / temperature))
    expected = temperature ** 2 * (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).mean()
    got = soft_kl(torch.tensor(s), torch.tensor(t), temperature, multilabel=True)
    assert got.item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- the cache
class CountingTeacher(torch.nn.Module):
    """A fixed per-pixel linear map of the colours to 3 classes; counts the frames it is asked about."""

    task = "segmentation"

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        generator = torch.Generator().manual_seed(0)
        torch.nn.init.normal_(self.conv.weight, generator=generator)
        torch.nn.init.normal_(self.conv.bias, generator=generator)
        self.frames_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.frames_seen += x.shape[0]
        return self.conv(x)


def _frames(folder: Path, n: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _cache(tmp_path: Path, frames: Path) -> TeacherCache:
    from surgenet.train.data import open_source

    return TeacherCache(tmp_path / "cache", FrameSet([open_source(frames)]), "segmentation", 3, 16, 4,
                        {"teacher": "counting"})


def test_teacher_cache_resumes_after_a_kill_without_recomputing(tmp_path):
    frames = _frames(tmp_path / "frames", 10)
    teacher = CountingTeacher()

    def killed(done: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _cache(tmp_path, frames).fill(teacher, (0.5,) * 3, (0.25,) * 3, batch_size=2, on_batch=killed)
    assert teacher.frames_seen == 4
    again = _cache(tmp_path, frames)
    assert again.fill(teacher, (0.5,) * 3, (0.25,) * 3, batch_size=2) == 6
    assert teacher.frames_seen == 10  # the 4 done frames were not asked again
    assert _cache(tmp_path, frames).fill(teacher, (0.5,) * 3, (0.25,) * 3) == 0 and teacher.frames_seen == 10

    # The resumed cache equals one built in one go, and its logits are the teacher's at 1/4 resolution.
    whole = TeacherCache(tmp_path / "whole", again.frames, "segmentation", 3, 16, 4, {"teacher": "counting"})
    whole.fill(CountingTeacher(), (0.5,) * 3, (0.25,) * 3, batch_size=3)
    a, b = again.open_read(), whole.open_read()
    assert a["logits.npy"].shape == (10, 3, 4, 4) and a["logits.npy"].dtype == np.float16
    np.testing.assert_array_equal(a["images.npy"], b["images.npy"])
    np.testing.assert_array_equal(a["logits.npy"], b["logits.npy"])
    x = (torch.from_numpy(np.array(a["images.npy"][7])).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = torch.nn.functional.avg_pool2d(CountingTeacher()(x), 4)[0].numpy()
    np.testing.assert_allclose(a["logits.npy"][7].astype(np.float32), expected, atol=2e-3, rtol=2e-3)
    assert (a["targets.npy"] == 255).all()  # unlabelled frames carry no label


def test_teacher_cache_is_rebuilt_for_another_teacher(tmp_path):
    frames = _frames(tmp_path / "frames", 4)
    _cache(tmp_path, frames).fill(CountingTeacher(), (0.5,) * 3, (0.25,) * 3)
    from surgenet.train.data import open_source

    other = TeacherCache(tmp_path / "cache", FrameSet([open_source(frames)]), "segmentation", 3, 16, 4,
                         {"teacher": "another"})
    teacher = CountingTeacher()
    assert other.fill(teacher, (0.5,) * 3, (0.25,) * 3) == 4 and teacher.frames_seen == 4


# ----------------------------------------------------------------------------- training views
def _quadrant_cache(folder: Path, n: int = 3, size: int = 32, reduction: int = 4) -> Path:
    """A cache whose frames, teacher logits and masks all show the same 4 quadrants (class 2*row + column half)."""
    folder.mkdir(parents=True)
    rows, cols = np.indices((size, size))
    classes = 2 * (rows >= size // 2) + (cols >= size // 2)
    grey = (40 + 50 * classes).astype(np.uint8)
    small = classes[::reduction, ::reduction]  # each reduced cell lies inside one quadrant
    logits = np.stack([(small == c) * 8.0 for c in range(4)]).astype(np.float16)
    for name, array in (("images", np.repeat(grey[None, :, :, None], 3, axis=3).repeat(n, 0)),
                        ("logits", np.repeat(logits[None], n, 0)), ("targets", np.repeat(classes[None], n, 0)
                                                                      .astype(np.uint8)),
                        ("done", np.ones(n, np.uint8))):
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array))
    return folder


def test_training_views_crop_the_frame_the_teacher_logits_and_the_mask_alike(tmp_path):
    from surgenet.train.distill_task import CachedFrames

    folder = _quadrant_cache(tmp_path / "cache")
    frames = CachedFrames(folder, "segmentation", (0.0,) * 3, (1.0,) * 3, crop_scale=(0.3, 0.6))
    shares = []
    for epoch in range(4):
        frames.epoch = epoch
        for index in range(len(frames)):
            x, logits, target, labelled = frames[index]
            assert labelled and x.shape == (3, 32, 32) and logits.shape == (4, 8, 8) and target.shape == (32, 32)
            teacher = torch.nn.functional.interpolate(logits[None].float(), size=(32, 32), mode="bilinear",
                                                      align_corners=False)[0].argmax(0)
            assert (teacher == target).float().mean() > 0.9
            # colour jitter of a grey frame is monotone: the brighter quadrants stay the higher classes
            grey = x[0]
            present = [c for c in range(4) if (target == c).sum() > 20]
            medians = [grey[target == c].median().item() for c in present]
            assert medians == sorted(medians) and len(set(medians)) == len(medians)
            shares.append((target == 0).float().mean().item())
    assert max(abs(share - 0.25) for share in shares) > 0.05  # the views are crops, not the whole frame
    whole = CachedFrames(folder, "segmentation", (0.0,) * 3, (1.0,) * 3, crop_scale=(1.0, 1.0))
    assert all((whole[i][2] == 0).float().mean().item() == 0.25 for i in range(len(whole)))


def test_label_term_is_the_class_weighted_cross_entropy():
    from types import SimpleNamespace

    from surgenet.train.distill_task import DistillTask

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 4, 5)) * 2
    target = rng.integers(0, 3, size=(2, 4, 5))
    target[0, 0, :2] = 255
    weight = np.array([0.5, 2.0, 1.0])
    cfg = SimpleNamespace(kd_weight=0.0, gt_weight=1.0, temperature=2.0, dice_weight=0.0)
    task = DistillTask(cfg, "segmentation", Path("."), class_weight=torch.tensor(weight, dtype=torch.float32))

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.out = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

        def forward(self, x):
            return self.out

    batch = (torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 1, 1), torch.tensor(target), torch.tensor([True, True]))
    p = _softmax(logits, 1)
    valid = target != 255
    picked = np.take_along_axis(p, np.where(valid, target, 0)[:, None], 1)[:, 0]
    w = weight[np.where(valid, target, 0)]
    expected = (w * -np.log(picked))[valid].sum() / w[valid].sum()
    assert task.loss(Fixed(), batch).item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def disc_teacher(tmp_path_factory) -> Path:
    """A CAFormer teacher fine-tuned on disc frames (frozen random backbone, trained FPN head)."""
    from surgenet.train.finetune import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("teacher")
    train = disc_dataset(root / "train", 16, 0)
    cfg = FinetuneConfig(task="segmentation", model="surgenetxl-caformer", pretrained=False, num_classes=2,
                         train=str(train), image_size=SIZE, epochs=6, batch_size=4, lr=1e-2, backbone_lr=0.0,
                         num_workers=0, class_names=["background", "disc"])
    torch.manual_seed(0)
    finetune(cfg, root / "out")
    return root / "out" / "best"


def _decisions(model, images: list[Path]) -> np.ndarray:
    import surgenet

    transform = surgenet.create_transform(model, size=SIZE)
    with torch.no_grad():
        return np.stack([model(transform(p)[None]).argmax(1)[0].numpy() for p in images])


def test_student_learns_the_teachers_decisions_from_unlabelled_frames(tmp_path, disc_teacher):
    import surgenet

    unlabelled = disc_dataset(tmp_path / "unlabelled", 48, 5) / "images"  # the masks are not used
    held_out = sorted((disc_dataset(tmp_path / "held_out", 8, 9) / "images").glob("*.jpg"))
    cfg = DistillConfig(teacher=str(disc_teacher), student="resnet18", data=[str(unlabelled)], image_size=SIZE,
                        gt_weight=0.0, epochs=8, batch_size=8, lr=3e-3, temperature=1.0, num_workers=0)
    torch.manual_seed(0)
    distill(cfg, tmp_path / "out")
    student = surgenet.load_model(tmp_path / "out" / "best")
    teacher = surgenet.load_model(disc_teacher)
    assert student.config["backbone"] == "resnet18" and student.class_names == ["background", "disc"]
    assert student.config["input_size"] == [3, SIZE, SIZE]
    want, got = _decisions(teacher, held_out) == 1, _decisions(student, held_out) == 1
    assert want.mean() > 0.05  # the teacher finds discs: there is something to imitate
    dice = 2 * (want & got).sum() / (want.sum() + got.sum())
    assert dice > 0.75, dice
    card = (tmp_path / "out" / "best" / "README.md").read_text()
    assert str(disc_teacher) in card and str(unlabelled) in card
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 9))


def test_distill_resumes_and_reuses_the_cache(tmp_path, disc_teacher, monkeypatch):
    unlabelled = disc_dataset(tmp_path / "unlabelled", 8, 5) / "images"
    val = disc_dataset(tmp_path / "val", 4, 7)
    cfg = DistillConfig(teacher=str(disc_teacher), student="resnet18", data=[str(unlabelled)], image_size=SIZE,
                        epochs=3, batch_size=4, num_workers=0, train=str(disc_dataset(tmp_path / "train", 4, 3)),
                        val=str(val))
    from surgenet.train import finetune as finetune_module

    save = finetune_module.atomic_torch_save

    def killed(state, path):
        if state["epoch"] == 2:
            raise KeyboardInterrupt
        save(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(finetune_module, "atomic_torch_save", killed)
        with pytest.raises(KeyboardInterrupt):
            distill(cfg, tmp_path / "out")
    calls = []
    original = TeacherCache.fill

    def counting(self, *args, **kwargs):
        calls.append(original(self, *args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(TeacherCache, "fill", counting)
    best = distill(cfg, tmp_path / "out", resume=True)
    assert calls == [0]  # every teacher prediction came from the cache
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and "val_mean_iou" in log[-1]
    assert best["epoch"] in (1, 2, 3)
    card = (tmp_path / "out" / "best" / "README.md").read_text()
    assert "student IOU disc" in card and "teacher IOU disc" in card  # measured numbers of both


# ----------------------------------------------------------------------------- the command line
def _saved(tmp_path: Path, task: str, **kwargs) -> Path:
    import surgenet

    folder = tmp_path / f"{task}-teacher"
    surgenet.load_model("resnet18", task=task, pretrained=False, **kwargs).save_pretrained(folder)
    return folder


def _one_line_error(capsys, argv: list[str], *words: str) -> None:
    from surgenet.train.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_command_line_mistakes_end_in_one_line_before_any_work(tmp_path, capsys):
    frames = _frames(tmp_path / "frames", 2)
    seg = _saved(tmp_path, "segmentation", num_classes=2)
    out = tmp_path / "out"
    _one_line_error(capsys, ["distill", "--data", str(frames), "--out", str(out)], "--teacher")
    _one_line_error(capsys, ["distill", "--teacher", str(_saved(tmp_path, "cvs")), "--task", "segmentation",
                             "--data", str(frames), "--out", str(out)], "cvs model")
    _one_line_error(capsys, ["distill", "--teacher", str(seg), "--student", "mobilenet_v99", "--data", str(frames),
                             "--out", str(out)], "not a timm architecture")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    _one_line_error(capsys, ["distill", "--teacher", str(seg), "--data", str(empty), "--out", str(out)],
                    "neither images nor videos")
    _one_line_error(capsys, ["distill", "--teacher", str(seg), "--out", str(out)], "--data")
    assert not out.exists()  # nothing was computed or written
