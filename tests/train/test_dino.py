"""DINO pieces against independent formulas and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from surgenet.train.dino import DINOHead, DINOLoss, MultiCropWrapper, build_schedules, cosine_schedule
from surgenet.train.dino.optim import cancel_last_layer_gradients, clip_gradients, ema_update, param_groups


def reference_dino_loss(student: np.ndarray, teacher: np.ndarray, center: np.ndarray, t_temp: float,
                        s_temp: float, ncrops: int) -> float:
    """The DINO loss written out in float64: mean over pairs (i global, v any, v != i) of the
    per-sample cross-entropy between softmax((t - c)/t_temp) and softmax(s/s_temp)."""
    b = teacher.shape[0] // 2
    total, pairs = 0.0, 0
    for i in range(2):
        t = (teacher[i * b:(i + 1) * b] - center) / t_temp
        p = np.exp(t - t.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for v in range(ncrops):
            if v == i:
                continue
            s = student[v * b:(v + 1) * b] / s_temp
            logq = s - s.max(1, keepdims=True) - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True))
            total += float(np.mean(-(p * logq).sum(1)))
            pairs += 1
    return total / pairs


def test_loss_matches_the_formula_and_updates_the_centre():
    rng = np.random.default_rng(0)
    k, b, ncrops = 16, 3, 4
    student = rng.normal(size=(ncrops * b, k))
    teacher = rng.normal(size=(2 * b, k))
    loss = DINOLoss(k, student_temp=0.1, center_momentum=0.9)
    loss.center.copy_(torch.from_numpy(rng.normal(size=(1, k)) * 0.1))
    center_before = loss.center.clone().double().numpy()
    out = loss(torch.tensor(student, dtype=torch.float32), torch.tensor(teacher, dtype=torch.float32), 0.04, ncrops)
    expected = reference_dino_loss(student, teacher, center_before, 0.04, 0.1, ncrops)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    # centre <- 0.9 centre + 0.1 mean of the teacher outputs (no process group: local mean)
    np.testing.assert_allclose(loss.center.numpy(), 0.9 * center_before + 0.1 * teacher.mean(0, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    assert "center" in loss.state_dict()


def test_loss_monitors_are_entropy_and_kl():
    k, b = 5, 2
    t = torch.randn(b, k)
    teacher = torch.cat([t, t])  # both global crops alike
    p = torch.softmax(t / 0.5, dim=-1)
    entropy = float(-(p * p.log()).sum(-1).mean())
    # A student whose softmax(s / 0.1) equals the teacher's softmax(t / 0.5) on every crop: KL 0.
    same = DINOLoss(k)(t.repeat(4, 1) * (0.1 / 0.5), teacher, 0.5, 4)
    assert same.teacher_entropy.item() == pytest.approx(entropy, rel=1e-5)
    assert same.kl.item() == pytest.approx(0.0, abs=1e-5)
    assert same.loss.item() == pytest.approx(entropy, rel=1e-5)
    # Any other student: KL = cross-entropy - entropy > 0.
    other = DINOLoss(k)(torch.randn(4 * b, k), teacher, 0.5, 4)
    assert other.kl.item() == pytest.approx(other.loss.item() - entropy, rel=1e-5) and other.kl.item() > 0


def test_head_last_layer_is_weight_normalised_and_frozen_norm():
    head = DINOHead(12, out_dim=10, hidden_dim=16, bottleneck_dim=8)
    with torch.no_grad():
        head.last_layer.weight_v.mul_(torch.arange(1, 11, dtype=torch.float32)[:, None])
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(10))
    assert not head.last_layer.weight_g.requires_grad
    x = torch.randn(3, 12)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    torch.testing.assert_close(head(x), z @ w.T)
    learned = DINOHead(12, out_dim=10, hidden_dim=16, bottleneck_dim=8, norm_last_layer=False)
    assert learned.last_layer.weight_g.requires_grad
    assert sum(isinstance(m, nn.Linear) for m in head.mlp) == 3


def test_cosine_schedule_at_known_steps():
    s = cosine_schedule(1.0, 0.0, epochs=2, steps_per_epoch=5, warmup_epochs=1)
    assert len(s) == 10
    np.testing.assert_allclose(s[:5], [0, 0.25, 0.5, 0.75, 1.0])  # DINO's warm-up ends at the peak
    assert s[5] == pytest.approx(1.0)
    assert s[7] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 5)))
    assert s[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 5)))


def test_dino_schedules_follow_the_recipe():
    from surgenet.train.config import load_config

    cfg = load_config("surgenetxl-caformer", ["loss.warmup_teacher_temp=0.02", "loss.warmup_teacher_temp_epochs=2"])
    sch = build_schedules(cfg.optim, cfg.loss, epochs=50, steps_per_epoch=4, global_batch=544)
    peak = 5e-4 * 544 / 256
    assert sch.lr[0] == 0 and sch.lr[39] == pytest.approx(peak) and sch.lr[40] == pytest.approx(peak)
    assert sch.lr[-1] == pytest.approx(1e-6, abs=peak * 1e-3) and sch.lr.min() >= 0
    assert sch.weight_decay[0] == pytest.approx(0.04) and sch.weight_decay[100] == pytest.approx(0.22)
    assert sch.momentum[0] == pytest.approx(0.996) and sch.momentum[100] == pytest.approx(0.998)
    np.testing.assert_allclose(sch.teacher_temp[[0, 3, 4, 7, 8, 199]], [0.02, 0.02, 0.04, 0.04, 0.04, 0.04])


def test_param_groups_exclude_norms_and_biases_from_weight_decay():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Conv2d(3, 3, 1))
    decay, no_decay = param_groups(model)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0


def test_gradients_are_clipped_per_parameter():
    a, b = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(2))
    model = nn.Module()
    model.a, model.b = a, b
    a.grad = torch.tensor([6.0, 8.0, 0.0, 0.0])  # norm 10 -> 3
    b.grad = torch.tensor([0.6, 0.8])  # norm 1 stays
    clip_gradients(model, 3.0)
    assert a.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(a.grad, torch.tensor([1.8, 2.4, 0.0, 0.0]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.grad, torch.tensor([0.6, 0.8]))


def test_last_layer_gradients_cancelled_in_the_first_epoch_only():
    head = DINOHead(4, out_dim=6, hidden_dim=8, bottleneck_dim=3)
    head(torch.randn(2, 4)).sum().backward()
    cancel_last_layer_gradients(head, epoch=1, freeze_last_layer=1)
    assert head.last_layer.weight_v.grad is not None
    cancel_last_layer_gradients(head, epoch=0, freeze_last_layer=1)
    assert head.last_layer.weight_v.grad is None and head.mlp[0].weight.grad is not None


def test_ema_update():
    teacher, student = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, 6.0])]
    ema_update(teacher, student, 0.75)
    torch.testing.assert_close(teacher[0], torch.tensor([1.5, 3.0]))


class _CountingBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward_embedding(self, x):
        self.calls.append(tuple(x.shape))
        return x.mean(dim=(2, 3))


def test_multicrop_wrapper_runs_the_backbone_once_per_resolution():
    backbone = _CountingBackbone()
    wrapper = MultiCropWrapper(backbone, nn.Identity())
    crops = [torch.full((2, 3, 8, 8), float(i)) for i in range(2)] + [torch.full((2, 3, 4, 4), 5.0)] * 3
    out = wrapper(crops)
    assert backbone.calls == [(4, 3, 8, 8), (6, 3, 4, 4)]
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 0, 1, 1, 5, 5, 5, 5, 5, 5]))
