"""BYOL, SimCLR and MSN on the pretraining engine: losses against their formulas, learning,
exact resume, export, and two processes equal to one (SimCLR's gathered negatives)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightly")
pytest.importorskip("yaml")

from surgenet.train.config import load_config  # noqa: E402
from surgenet.train.pretrain import Pretrainer, pretrain  # noqa: E402
from tests.helpers.torchrun import one_and_two_processes  # noqa: E402
from tests.train.test_pretrain import read_jsonl, write_frames  # noqa: E402

SMALL = ["train.precision=fp32", "train.batch_size=4", "train.epochs=4", "optim.warmup_epochs=1",
         "train.log_every=1", "data.num_workers=0", "byol.view_size=32", "simclr.view_size=32",
         "msn.random_size=32", "msn.focal_size=16",
         "simclr.batch_norm=false",  # BatchNorm statistics over the 8 views of batch 4 are noise
         # Every method on tiny's MSN network (a 2-block ViT-Tiny, 8 px patches): checkpoints of a few MB.
         "model.name=vit_tiny_patch16_224", "model.network_kwargs={patch_size: 8, depth: 2, img_size: 32}"]
METHODS = ("byol", "simclr", "msn")
LEARNING: dict[str, list[str]] = {}  # per-method settings of the learning test (none needed)


def run(method: str, data: Path, out: Path, *extra: str, resume: bool = False) -> list[dict]:
    overrides = list(extra) if resume else [f"method={method}", f"data.sources=[{data}]", *SMALL, *extra]
    config = load_config(out / "config.yaml" if resume else "tiny", overrides)
    return pretrain(config, out, resume=resume)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return write_frames(tmp_path_factory.mktemp("frames"), 8)


# ------------------------------------------------------------------ losses against their formulas
def test_byol_loss_is_two_minus_two_cosine_and_stops_the_target_gradient():
    from surgenet.train.methods.byol import byol_loss

    p = torch.tensor([[3.0, 0.0], [0.0, 2.0]], requires_grad=True)
    z_same = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    z_orth = torch.tensor([[0.0, 1.0], [4.0, 0.0]])
    z_opp = torch.tensor([[-2.0, 0.0], [0.0, -1.0]])
    assert byol_loss(p, p, z_same, z_same).item() == pytest.approx(0.0, abs=1e-6)  # cos 1, any length
    assert byol_loss(p, p, z_orth, z_orth).item() == pytest.approx(2.0)  # cos 0
    assert byol_loss(p, p, z_opp, z_opp).item() == pytest.approx(4.0)  # cos -1
    # Every pair at 45 degrees: 2 - 2 cos 45 = 2 - sqrt 2.
    z45 = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert byol_loss(p, p, z45, z45).item() == pytest.approx(2 - math.sqrt(2), rel=1e-6)
    # Collapse guard: the target is a constant of the step (stop-gradient), only the online side learns.
    z = torch.tensor([[1.0, 2.0], [3.0, 1.0]], requires_grad=True)
    byol_loss(p, p, z, z).backward()
    assert z.grad is None and p.grad is not None and p.grad.abs().sum() > 0


def reference_nt_xent(z0: np.ndarray, z1: np.ndarray, tau: float) -> float:
    """NT-Xent (SimCLR eq. 1) in float64: each of the 2N views against its positive, all 2N - 2
    other views as negatives, averaged over the 2N anchors."""
    z = np.concatenate([z0, z1]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z0)
    sim = z @ z.T / tau
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        losses.append(-(sim[i, j] - np.log(np.exp(sim[i, others]).sum())))
    return float(np.mean(losses))


def test_nt_xent_matches_the_formula_and_punishes_collapse():
    from lightly.loss import NTXentLoss

    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    loss = NTXentLoss(temperature=0.2)
    got = loss(torch.tensor(z0, dtype=torch.float32), torch.tensor(z1, dtype=torch.float32)).item()
    assert got == pytest.approx(reference_nt_xent(z0, z1, 0.2), rel=1e-5)
    # Collapse (every view the same point): every similarity is 1, the loss is log(2N - 1).
    same = torch.ones(5, 8)
    assert loss(same, same).item() == pytest.approx(math.log(9), rel=1e-6)
    # Views on their positive and orthogonal to the 8 others: log(1 + 8 exp(-1 / 0.2)), far below collapse.
    eye = torch.eye(5, 8)
    assert loss(eye, eye).item() == pytest.approx(math.log(1 + 8 * math.exp(-5)), rel=1e-5)


def reference_msn(anchors, targets, prototypes, tau, sharpen_exp, me_max_weight):
    """MSN loss in float64: H(sharpened target assignment, anchor assignment) + ME-MAX, where an
    assignment is softmax(cos(x, prototypes) / tau), sharpening raises to 1/T and renormalises,
    and ME-MAX is log K minus the entropy of the mean anchor assignment."""
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    a, t, q = unit(anchors), unit(targets), unit(prototypes)
    p = softmax(a @ q.T / tau)
    pt = softmax(t @ q.T / tau) ** (1 / sharpen_exp)
    pt /= pt.sum(1, keepdims=True)
    pt = np.tile(pt, (len(a) // len(t), 1))
    ce = np.mean(-(pt * np.log(p)).sum(1))
    mean_p = p.mean(0)
    return ce + me_max_weight * (np.log(len(q)) + (mean_p * np.log(mean_p)).sum())


def test_msn_loss_matches_the_formula_and_me_max_punishes_one_prototype_for_all():
    from lightly.loss import MSNLoss

    rng = np.random.default_rng(1)
    anchors, targets, protos = rng.normal(size=(6, 4)), rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    loss = MSNLoss(temperature=0.1, sinkhorn_iterations=0, regularization_weight=1.0)
    got = loss(*(torch.tensor(x, dtype=torch.float32) for x in (anchors, targets, protos)),
               target_sharpen_temperature=0.25).item()
    assert got == pytest.approx(reference_msn(anchors, targets, protos, 0.1, 0.25, 1.0), rel=1e-4)
    # ME-MAX alone: all anchors on one prototype -> log K; spread evenly over the K prototypes -> 0.
    eye = torch.eye(4)
    spread = MSNLoss().regularization_loss(torch.full((4,), 0.25))
    assert spread.item() == pytest.approx(0.0, abs=1e-6)
    # Whole loss with confident, matching anchor and target: cross-entropy ~0, so what is left is ME-MAX.
    one = MSNLoss(temperature=0.01, sinkhorn_iterations=0)(eye[[0, 0, 0, 0]] * 1.0, eye[[0, 0, 0, 0]], eye)
    even = MSNLoss(temperature=0.01, sinkhorn_iterations=0)(eye, eye, eye)
    assert one.item() == pytest.approx(math.log(4), abs=1e-3) and even.item() == pytest.approx(0.0, abs=1e-3)


def test_masked_embedding_keeps_the_class_token_and_the_asked_share_of_patches():
    from surgenet.zoo.backbones import create_network
    from surgenet.train.methods.msn import masked_embedding

    vit = create_network("vit_tiny_patch16_224", patch_size=8, depth=1, img_size=32).eval()
    seen = []
    hook = vit.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = masked_embedding(vit, x, 0.0)
        masked = masked_embedding(vit, x, 0.5)
    hook.remove()
    assert seen == [(2, 17, 192), (2, 9, 192)]  # 1 class token + 16 patches, then + 8 of them
    torch.testing.assert_close(full, vit.forward_head(vit.forward_features(x), pre_logits=True))
    assert masked.shape == full.shape and not torch.allclose(masked, full)


# ------------------------------------------------------------------ the engine with each method
def fixed_batch_loss(trainer: Pretrainer, crops: list[torch.Tensor]) -> float:
    """The method's loss on one batch, with the same random masks every time."""
    torch.manual_seed(0)
    values = trainer.schedules.at(0)
    with torch.no_grad():
        loss, _ = trainer.method.compute_loss(trainer.method.forward(trainer.student, crops, values), values,
                                              len(crops))
    return loss.item()


@pytest.fixture(scope="module")
def trained(frames, tmp_path_factory) -> dict[str, tuple[Path, list[dict], float, float]]:
    runs = {}
    for method in METHODS:
        out = tmp_path_factory.mktemp(method)
        config = load_config("tiny", [f"method={method}", f"data.sources=[{frames}]", *SMALL, "train.max_steps=6",
                                      *LEARNING.get(method, [])])
        trainer = Pretrainer(config, out)
        crops = next(iter(trainer.loader(1)))[0]
        before = fixed_batch_loss(trainer, crops)
        torch.manual_seed(1)
        records = trainer.run()
        runs[method] = out, records, before, fixed_batch_loss(trainer, crops)
    return runs


@pytest.mark.parametrize("method", METHODS)
def test_a_few_steps_lower_the_loss_without_collapse(trained, method):
    out, records, before, after = trained[method]
    assert len(records) == 6 and all(math.isfinite(r["loss"]) for r in records)
    assert after < before  # on the same batch, with the same masks
    if method == "simclr":  # and below the value of a collapsed network, log(2N - 1) for N = 4
        assert after < math.log(7)
    # Collapse maps every image to one point: the spread of the normalised embeddings goes to 0.
    assert min(r["embedding_std"] for r in records) > 0.05 and records[-1]["embedding_std"] > 0.1
    assert f"method: {method}" in (out / "config.yaml").read_text()


@pytest.mark.parametrize("method", METHODS)
def test_the_exported_backbone_loads_in_one_line(trained, method):
    import surgenet
    from surgenet.zoo.backbones import FeatureBackbone, create_network

    out = trained[method][0]
    config = json.loads((out / "teacher" / "config.json").read_text())
    assert config["method"] == method
    state = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)
    part = "student" if method == "simclr" else "teacher"  # SimCLR has no EMA network
    network = create_network(config["arch"], **config["network_kwargs"])
    network.load_state_dict({k[len("backbone.model."):]: v for k, v in state[part].items()
                             if k.startswith("backbone.model.")})
    reference = FeatureBackbone(network, config["arch"]).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        for loaded in (surgenet.load_backbone(out / "teacher"),  # the folder names its architecture
                       surgenet.load_backbone(config["name"], weights=out / "teacher"),
                       surgenet.load_backbone(config["name"], weights=out / "checkpoint.pth",
                                              **config["network_kwargs"])):
            for a, b in zip(loaded.eval()(x), expected):
                assert torch.equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_killed_and_resumed_run_continues_bit_for_bit(frames, tmp_path, monkeypatch, method):
    straight = tmp_path / "straight"
    run(method, frames, straight, "train.max_steps=4")
    interrupted = tmp_path / "interrupted"
    train_step = Pretrainer.train_step

    def killed_in_step_4(self, crops):
        if self.step == 3:  # the last checkpoint is the epoch end at step 2
            raise KeyboardInterrupt
        return train_step(self, crops)

    with monkeypatch.context() as patch:
        patch.setattr(Pretrainer, "train_step", killed_in_step_4)
        with pytest.raises(KeyboardInterrupt):
            run(method, frames, interrupted, "train.max_steps=4")
    resumed = run(method, frames, interrupted, "train.max_steps=4", resume=True)
    assert [r["step"] for r in resumed] == [3, 4]
    log, reference = read_jsonl(interrupted / "log.jsonl"), read_jsonl(straight / "log.jsonl")
    assert [r["loss"] for r in log] == [r["loss"] for r in reference]
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(interrupted / "checkpoint.pth", weights_only=True)
    for part in ("student", "teacher", "loss"):
        assert (part in a) == (part in b)
        for key in a.get(part, {}):
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"


def test_msn_refuses_a_backbone_without_patches(frames, tmp_path):
    from surgenet.exceptions import InputError

    with pytest.raises(InputError, match="MSN masks ViT patch tokens"):
        run("msn", frames, tmp_path, "train.max_steps=1", "model.name=surgenetxl-caformer", "model.network_kwargs={}")


def test_unknown_method_is_refused_with_the_valid_ones(frames, tmp_path):
    from surgenet.exceptions import InputError

    with pytest.raises(InputError, match="Did you mean 'simclr'.*dino, byol, simclr, msn"):
        run("simclr2", frames, tmp_path, "train.max_steps=1")


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process_for_simclr(frames, tmp_path):
    """NT-Xent over the global batch: 2 processes x 2 images with gathered negatives give the
    losses and weights of 1 process x 4 images."""
    sets = SMALL + ["model.drop_path_rate=0", "simclr.batch_norm=false"]
    args = ["pretrain", "--method", "simclr", "--config", "tiny", "--data", str(frames), "--steps", "2",
            *(x for s in sets for x in ("--set", s))]
    one, two = one_and_two_processes(args, tmp_path)
    log1, log2 = read_jsonl(one / "log.jsonl"), read_jsonl(two / "log.jsonl")
    assert [r["loss"] for r in log2] == pytest.approx([r["loss"] for r in log1], rel=1e-5)
    a = torch.load(one / "checkpoint.pth", weights_only=True)
    b = torch.load(two / "checkpoint.pth", weights_only=True)
    diffs = torch.cat([(a["student"][k] - b["student"][k]).abs().flatten() for k in a["student"]])
    assert (diffs <= 1e-5).float().mean() > 0.99
    assert diffs.max() <= 2 * sum(r["lr"] for r in log1)
