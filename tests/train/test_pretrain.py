"""DINO pretraining end to end at tiny sizes: learning, exact resume, teacher export, torchrun."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("yaml")

from surgenet.train.config import load_config  # noqa: E402
from surgenet.train.pretrain import Pretrainer, pretrain  # noqa: E402
from tests.helpers.torchrun import one_and_two_processes  # noqa: E402

# CAFormer-S18 (the SurgeNetXL network) at 32/16 px crops with a 256-prototype head; the learning
# rate is the tiny config's own.
SMALL = ["crops.global_size=32", "crops.local_size=16", "crops.local_crops=2", "train.precision=fp32",
         "train.batch_size=4", "train.epochs=4", "optim.warmup_epochs=1", "train.log_every=1",
         "data.num_workers=0"]


def write_frames(folder: Path, n: int, seed: int = 0) -> Path:
    """Dark frames with one bright disc each, of random size, place and colour."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:48, :64]
    for i in range(n):
        image = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
        cy, cx, r = rng.integers(12, 36), rng.integers(12, 52), rng.integers(6, 14)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(100, 255, 3)
        Image.fromarray(image).save(folder / f"frame_{i:03d}.png")
    return folder


def run(data: Path, out: Path, *extra: str, resume: bool = False) -> list[dict]:
    config = load_config(out / "config.yaml" if resume else "tiny",
                         [f"data.sources=[{data}]", *SMALL, *extra] if not resume else list(extra))
    return pretrain(config, out, resume=resume)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return write_frames(tmp_path_factory.mktemp("frames"), 8)


@pytest.fixture(scope="module")
def trained(frames, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("run")
    return out, run(frames, out, "train.max_steps=6")


def test_a_few_steps_lower_the_loss_without_collapse(trained):
    out, records = trained
    losses = [r["loss"] for r in records]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.3
    log_k = math.log(256)
    for r in records:
        # Collapse shows as a teacher entropy at 0 (one prototype) or at log K (uniform) with KL 0.
        assert 0.3 < r["teacher_entropy"] < log_k - 0.3
        assert r["kl"] > 0.05
        # The logged KL is the cross-entropy minus the teacher entropy (the loss pairs it averages).
        assert r["kl"] == pytest.approx(r["loss"] - r["teacher_entropy"], abs=1e-4)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 7))
    assert (out / "config.yaml").is_file() and json.loads((out / "run.json").read_text())["surgenet_version"]


def test_schedules_reach_the_steps_as_configured(trained):
    _, records = trained
    # 8 frames, batch 4: 2 steps per epoch; peak lr 0.05 (tiny's) * 4 / 256 reached at the end of warm-up.
    assert records[0]["lr"] == 0.0
    assert records[1]["lr"] == pytest.approx(0.05 * 4 / 256)
    assert records[0]["momentum"] == pytest.approx(0.996)
    assert [r["epoch"] for r in records] == [0, 0, 1, 1, 2, 2]


def test_exported_teacher_loads_with_load_backbone(trained):
    import surgenet
    from surgenet.zoo.backbones import FeatureBackbone, create_network

    out, _ = trained
    config = json.loads((out / "teacher" / "config.json").read_text())
    assert config["arch"] == "caformer_s18_surgenet" and config["source"] == "surgenet-train"
    state = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)
    network = create_network("caformer_s18_surgenet")
    network.load_state_dict({k[len("backbone.model."):]: v for k, v in state["teacher"].items()
                             if k.startswith("backbone.model.")})
    reference = FeatureBackbone(network, "caformer_s18_surgenet").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        for weights in (out / "teacher", out / "checkpoint.pth"):  # the export, and the full checkpoint
            loaded = surgenet.load_backbone("surgenet-caformer", weights=weights).eval()
            for a, b in zip(loaded(x), expected):
                assert torch.equal(a, b)
            assert torch.equal(loaded.forward_embedding(x), reference.forward_embedding(x))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_killed_and_resumed_run_continues_bit_for_bit(frames, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run(frames, straight, "train.max_steps=5")
    interrupted = tmp_path / "interrupted"
    train_step = Pretrainer.train_step

    def killed_in_step_4(self, crops):
        if self.step == 3:  # step 3 is logged, its checkpoint (epoch end: step 2) is older
            raise KeyboardInterrupt
        return train_step(self, crops)

    with monkeypatch.context() as patch:
        patch.setattr(Pretrainer, "train_step", killed_in_step_4)
        with pytest.raises(KeyboardInterrupt):
            run(frames, interrupted, "train.max_steps=5")
    assert [r["step"] for r in read_jsonl(interrupted / "log.jsonl")] == [1, 2, 3]
    resumed = run(frames, interrupted, "train.max_steps=5", resume=True)
    assert [r["step"] for r in resumed] == [3, 4, 5]
    # The log holds each step once, with the values of the uninterrupted run.
    log, reference = read_jsonl(interrupted / "log.jsonl"), read_jsonl(straight / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in log] == [r["loss"] for r in reference]
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(interrupted / "checkpoint.pth", weights_only=True)
    for part in ("student", "teacher", "loss"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])


def test_a_new_run_into_an_old_folder_starts_a_new_log(frames, tmp_path):
    run(frames, tmp_path, "train.max_steps=2")
    run(frames, tmp_path, "train.max_steps=1")
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1]


def _labelled_frames(root: Path) -> Path:
    """Two classes of frames a frozen random backbone tells apart: flat dark vs flat bright."""
    for label, value in (("dark", 25), ("bright", 225)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            noise = np.random.default_rng(i).integers(0, 30, (40, 40, 3))
            Image.fromarray((value - 15 + noise).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def test_periodic_knn_and_linear_probe_are_logged_and_leave_training_unchanged(frames, tmp_path):
    import surgenet
    from surgenet.evaluation.probes import knn_evaluate, linear_evaluate

    labelled = _labelled_frames(tmp_path / "labelled")
    evaluated, plain = tmp_path / "evaluated", tmp_path / "plain"
    run(frames, evaluated, "train.max_steps=3", "train.keep_every_epochs=1", "eval.method=both",
        "eval.every_epochs=1", "eval.image_size=32", f"eval.train={labelled}", f"eval.val={labelled}", "eval.k=3",
        "eval.linear_epochs=30", "eval.linear_lr=0.05")
    run(frames, plain, "train.max_steps=3")
    log = read_jsonl(evaluated / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 2, 3]  # the evaluation follows the step-2 record (epoch end)
    record = log[2]
    # The teacher kept at the end of epoch 1 (step 2) is the one evaluated: the offline protocol agrees.
    teacher = surgenet.load_backbone("surgenetxl-caformer", weights=evaluated / "checkpoint_epoch0001.pth")
    knn = knn_evaluate(teacher, labelled, labelled, image_size=32, k=3)
    linear = linear_evaluate(teacher, labelled, labelled, image_size=32, epochs=30, lr=0.05)
    assert record["knn_top1"] == knn["top1"] and record["linear_top1"] == linear["top1"]
    assert record["linear_balanced_accuracy"] == linear["balanced_accuracy"] and record["epoch"] == 0
    assert record["linear_top1"] == 1.0  # dark vs bright, probed on its own training frames
    # Evaluating draws no random numbers: the run goes on exactly as one without evaluation.
    a = torch.load(evaluated / "checkpoint.pth", weights_only=True)
    b = torch.load(plain / "checkpoint.pth", weights_only=True)
    for key in a["student"]:
        assert torch.equal(a["student"][key], b["student"][key]), key


def test_unknown_eval_method_is_refused(frames, tmp_path):
    from surgenet.exceptions import InputError

    with pytest.raises(InputError, match="eval.method must be one of knn, linear, both"):
        run(frames, tmp_path, "train.max_steps=1", "eval.method=svm")


def test_resume_refuses_a_changed_recipe(frames, tmp_path):
    from surgenet.exceptions import InputError

    run(frames, tmp_path, "train.max_steps=1")
    with pytest.raises(InputError, match="optim.lr"):
        run(frames, tmp_path, "train.max_steps=2", "optim.lr=0.1", resume=True)


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(frames, tmp_path):
    """Global batch 4 on one process vs 2 x 2 on two gloo processes: same losses, centre, teacher."""
    args = ["pretrain", "--config", "tiny", "--data", str(frames), "--steps", "3",
            *(x for s in SMALL + ["model.drop_path_rate=0"] for x in ("--set", s))]
    one, two = one_and_two_processes(args, tmp_path)
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    log1 = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    log2 = [json.loads(x) for x in (two / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log2] == pytest.approx([r["loss"] for r in log1], rel=1e-5)
    a = torch.load(one / "checkpoint.pth", weights_only=True)
    b = torch.load(two / "checkpoint.pth", weights_only=True)
    torch.testing.assert_close(b["loss"]["center"], a["loss"]["center"], atol=1e-6, rtol=0)
    for key in a["teacher"]:
        torch.testing.assert_close(b["teacher"][key], a["teacher"][key], atol=1e-4, rtol=0)
    # Adam turns float-rounding differences of near-zero gradients into full-size steps, so a few
    # student weights may differ by up to two steps' learning rates; 99% agree to 1e-5.
    diffs = torch.cat([(a["student"][k] - b["student"][k]).abs().flatten() for k in a["student"]])
    assert (diffs <= 1e-5).float().mean() > 0.99
    assert diffs.max() <= 2 * sum(r["lr"] for r in log1)
