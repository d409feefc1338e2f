"""Phase recognition: shapes, online == offline frame by frame, causality, any number of phases."""

from __future__ import annotations

import pytest
import torch

import surgenet
from surgenet.exceptions import InputError
from surgenet.models.temporal import CausalTCN

# (backbone, temporal model, phases): both temporal models, a CNN and a ViT, Cholec80 (7) and 13 phases.
CASES = [("surgenet-caformer", "tcn", 7), ("surgenetxl-dinov1-vits16", "lstm", 13)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{t}-{p}" for _, t, p in CASES])
def phase_model(request):
    name, temporal, phases = request.param
    kwargs = {} if temporal == "tcn" else {"temporal": "lstm", "hidden_size": 32}
    model = surgenet.load_model(name, task="phase", num_classes=phases, pretrained=False, **kwargs)
    assert model.config["head"]["temporal"] == temporal
    return model


def test_shapes_of_a_clip_and_a_batch_of_clips(phase_model):
    p = phase_model.num_classes
    torch.manual_seed(0)
    clips = torch.randn(2, 3, 3, 64, 64)  # (B, T, 3, H, W)
    with torch.inference_mode():
        batched = phase_model(clips)
        single = phase_model(clips[1])
        feats = phase_model.forward_features(clips)
    assert tuple(batched.shape) == (2, 3, p)
    assert tuple(single.shape) == (3, p)
    assert tuple(feats.shape) == (2, 3, phase_model.backbone.embed_dim)
    # clips of a batch are independent: clip 1 alone gives what it gives in the batch
    torch.testing.assert_close(single, batched[1], atol=1e-5, rtol=1e-4)


def test_online_steps_equal_the_offline_pass_end_to_end(phase_model):
    torch.manual_seed(1)
    clips = torch.randn(2, 3, 3, 64, 64)
    with torch.inference_mode():
        offline = phase_model(clips)
        state = phase_model.init_state(batch_size=2)
        online = []
        for t in range(clips.shape[1]):
            logits, state = phase_model.step(clips[:, t], state)
            online.append(logits)
    torch.testing.assert_close(torch.stack(online, dim=1), offline, atol=1e-5, rtol=1e-4)


def _features(phase_model, T: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, T, phase_model.backbone.embed_dim, generator=gen)


def test_online_equals_offline_over_a_long_clip(phase_model):
    feats = _features(phase_model, 40, seed=2)
    with torch.inference_mode():
        offline = phase_model.forward_temporal(feats)[0]
        state = phase_model.init_state()
        online = []
        for t in range(feats.shape[1]):
            logits, state = phase_model.step_features(feats[:, t], state)
            online.append(logits[0])
    assert tuple(offline.shape) == (40, phase_model.num_classes)
    torch.testing.assert_close(torch.stack(online), offline, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("t", [0, 9, 25])
def test_prediction_at_t_never_depends_on_later_frames(phase_model, t):
    feats = _features(phase_model, 32, seed=3)
    changed = feats.clone()
    changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:]) * 3
    with torch.inference_mode():
        before, after = phase_model.forward_temporal(feats)[0], phase_model.forward_temporal(changed)[0]
    torch.testing.assert_close(after[:t + 1], before[:t + 1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(after[t + 1], before[t + 1], atol=1e-4)  # the change does show later


def test_tcn_online_fifo_beyond_the_receptive_field():
    """A small TCN (receptive field 7 frames per stage) over 30 frames: the per-layer buffers
    must slide, not grow or reset, for online to equal offline."""
    tcn = CausalTCN(16, 5, num_stages=3, num_layers=2, channels=8).eval()
    feats = torch.randn(2, 30, 16)
    with torch.inference_mode():
        offline = tcn(feats)
        state = tcn.init_state(2)
        online = []
        for t in range(30):
            logits, state = tcn.step(feats[:, t], state)
            online.append(logits)
        # a frame older than the whole receptive field (3 stages x 6 frames + 1) has no influence
        changed = feats.clone()
        changed[:, 0] += 5.0
        late = tcn(changed)[:, 19:]
    torch.testing.assert_close(torch.stack(online, dim=1), offline, atol=1e-5, rtol=1e-4)
    assert all(s.shape[-1] == h for s, h in zip(state, [2, 4] * 3))
    torch.testing.assert_close(late, offline[:, 19:], atol=1e-6, rtol=1e-6)
    assert len(tcn.forward_stages(feats)) == 3


def test_temporal_options_are_checked():
    with pytest.raises(InputError, match="valid"):
        surgenet.load_model("surgenet-caformer", task="phase", num_classes=7, pretrained=False, temporal="gru")
    with pytest.raises(InputError, match="num_layers"):
        surgenet.load_model("surgenet-caformer", task="phase", num_classes=7, pretrained=False, kernel=5)


def test_bad_frame_shapes_are_refused(phase_model):
    with pytest.raises(InputError):
        phase_model(torch.randn(3, 64, 64))
    with pytest.raises(InputError):
        phase_model.step(torch.randn(3, 64, 64), phase_model.init_state())
