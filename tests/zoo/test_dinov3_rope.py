"""DINOv3 RoPE periods: a released file gives Meta's features because its stored periods are used.

SurgeNetDINO trained with ``pos_embed_rope_dtype: bf16``: the files hold bf16 periods, which
Meta's hub loader uses in fp32. The reference (tests/reference/dinov3_ref.py) is written from
Meta's code and holds its periods the same way; its weights are far from their init (layer
scales near 1, query and key projections scaled up so that the attention is as sharp as a
trained ViT's), so formula periods in place of the stored ones are visible in every block.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import surgenet
from surgenet.exceptions import CheckpointError
from tests.helpers.released import teacher_file
from tests.reference import randomize_
from tests.reference.dinov3_ref import DINOv3Ref

REL_TOL = 1e-5  # as for every other family (test_load_backbone.py)
NAME = "surgenetxl-dinov3-vits16"
BLOCKS = (2, 5, 8, 11)  # the entry's four returned blocks


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


def _trained_like_reference(seed: int = 11, sharpness: float = 2.0) -> DINOv3Ref:
    ref = randomize_(DINOv3Ref(embed_dim=384, depth=12, num_heads=6), seed)
    with torch.no_grad():
        for block in ref.blocks:
            dim = block.attn.qkv.weight.shape[1]
            block.attn.qkv.weight[: 2 * dim] *= sharpness  # q and k: logits sharpness**2 larger
    return ref.eval()


@pytest.fixture(scope="module")
def reference() -> DINOv3Ref:
    return _trained_like_reference()


@pytest.fixture
def released(hf_cache, reference):
    """The reference published as the entry's released teacher file (through huggingface_hub)."""
    info = surgenet.model_info(NAME)
    assert reference.rope_embed.periods.dtype == torch.bfloat16  # as the training code holds them
    hf_cache.add(info["repo_id"], info["filename"], teacher_file(reference.state_dict(), 384))
    return reference


def _features(bb, x):
    with torch.no_grad():
        return [f.flatten(2).transpose(1, 2) for f in bb(x)]


def test_stored_periods_are_not_the_fp32_formula(reference):
    formula = 100.0 ** (2 * torch.arange(16, dtype=torch.float64) / 32)
    stored = reference.rope_embed.periods.double()
    assert (stored - formula).abs().max() > 0.01  # e.g. 1.3359 stored, 1.3335 computed


@pytest.mark.parametrize("hw", [(336, 336), (224, 320)], ids=["native-336", "224x320"])
def test_released_dinov3_file_gives_metas_features_in_all_four_blocks(released, hw):
    bb = surgenet.load_backbone(NAME).eval()
    assert tuple(bb.out_indices) == BLOCKS
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(3))
    ours = _features(bb, x)
    with torch.no_grad():
        blocks = released.forward_blocks(x)
    for i, block in enumerate(BLOCKS):
        assert _rel_err(ours[i], blocks[block][:, 1:]) < REL_TOL, f"block {block}"
    with torch.no_grad():
        assert _rel_err(bb.forward_embedding(x), blocks[11][:, 0]) < REL_TOL


def test_the_formula_periods_would_be_visibly_wrong(released):
    # The check above can fail: the same weights with timm's fp32 periods miss Meta's features.
    bb = surgenet.load_backbone(NAME).eval()
    bb.model.rope.periods.copy_(bb.model.rope.period_candidates()["fp32 formula"])
    x = torch.randn(1, 3, 224, 320, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        blocks = released.forward_blocks(x)
    assert _rel_err(_features(bb, x)[3], blocks[11][:, 1:]) > 100 * REL_TOL


def test_periods_and_key_bias_stay_as_stored_through_casts_and_buffer_reinit(released):
    bb = surgenet.load_backbone(NAME).eval()
    stored = released.rope_embed.periods.float()
    embed = bb.model.rope.get_embed(shape=(14, 21)).clone()
    for cast in (lambda m: m.half(), lambda m: m.to(torch.bfloat16), lambda m: m.float()):
        cast(bb)
        rope = bb.model.rope
        assert rope.periods.dtype == torch.float32
        assert torch.equal(rope.periods, stored)
        assert "rope.periods" in bb.model.state_dict()
    from timm.models._manipulate import reinit_non_persistent_buffers

    key_bias = bb.model.blocks[3].attn.k_bias.detach().clone()  # learned (mask_k_bias: false)
    assert torch.count_nonzero(key_bias) > 0
    bb.model.rope.init_non_persistent_buffers()
    reinit_non_persistent_buffers(bb.model)  # what timm runs after building on the meta device
    assert torch.equal(bb.model.rope.periods, stored)
    assert torch.equal(bb.model.rope.get_embed(shape=(14, 21)), embed)
    assert torch.equal(bb.model.blocks[3].attn.k_bias.detach(), key_bias)  # timm would zero it here
    half = copy.deepcopy(bb).to(torch.bfloat16)
    assert torch.equal(half.model.rope.periods, stored)


def test_a_file_without_periods_uses_the_formula(tmp_path, reference):
    state = {k: v for k, v in reference.state_dict().items() if k != "rope_embed.periods"}
    torch.save(teacher_file(state, 384), tmp_path / "no_periods.pth")
    bb = surgenet.load_backbone(NAME, weights=tmp_path / "no_periods.pth")
    formula = 100.0 ** (2 * torch.arange(16, dtype=torch.float32) / 32)
    torch.testing.assert_close(bb.model.rope.periods, formula, rtol=1e-6, atol=0)


def test_periods_of_another_rope_setting_are_an_error_naming_the_file(tmp_path, reference):
    state = reference.state_dict()
    state["rope_embed.periods"] = (10000.0 ** (2 * torch.arange(16) / 32)).to(torch.bfloat16)  # base 1e4
    torch.save(teacher_file(state, 384), tmp_path / "base10000.pth")
    with pytest.raises(CheckpointError, match=r"base10000\.pth.*RoPE periods"):
        surgenet.load_backbone(NAME, weights=tmp_path / "base10000.pth")


def test_fp32_periods_of_a_fp32_run_load_too(tmp_path):
    ref = randomize_(DINOv3Ref(embed_dim=384, depth=12, num_heads=6, rope_dtype=torch.float32), 4).eval()
    torch.save(teacher_file(ref.state_dict(), 384), tmp_path / "fp32.pth")
    bb = surgenet.load_backbone(NAME, weights=tmp_path / "fp32.pth", out_indices=(11,)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert _rel_err(_features(bb, x)[0], ref.forward_blocks(x)[11][:, 1:]) < REL_TOL


def test_task_model_round_trip_and_torch_hub_keep_the_stored_periods(tmp_path, released):
    import hubconf

    stored = released.rope_embed.periods.float()
    model = surgenet.load_model(NAME, task="segmentation", num_classes=3)
    assert torch.equal(model.backbone.model.rope.periods, stored)
    model.save_pretrained(tmp_path / "seg")
    again = surgenet.load_model(tmp_path / "seg")
    assert torch.equal(again.backbone.model.rope.periods, stored)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    hub = torch.hub.load(str(hubconf.__file__).rsplit("/", 1)[0], NAME.replace("-", "_"), source="local")
    assert torch.equal(hub.model.rope.periods, stored)


def test_task_model_saved_before_periods_were_kept_still_loads(tmp_path, released):
    # Folders written by older versions have no rope.periods: they load with the formula, as made.
    from safetensors.torch import load_file, save_file

    model = surgenet.load_model(NAME, task="segmentation", num_classes=3)
    model.save_pretrained(tmp_path / "old")
    weights = tmp_path / "old" / "model.safetensors"
    state = {k: v for k, v in load_file(weights).items() if not k.endswith("rope.periods")}
    save_file(state, weights)
    old = surgenet.load_model(tmp_path / "old")
    formula = old.backbone.model.rope.period_candidates()["fp32 formula"]
    assert torch.equal(old.backbone.model.rope.periods, formula)


@pytest.mark.slow
def test_onnx_export_computes_with_the_stored_periods(tmp_path, released):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from surgenet_export import export_onnx

    model = surgenet.load_model(NAME, task="segmentation", num_classes=3)
    result = export_onnx(model, tmp_path / "v3.onnx", imgsz=(64, 96))
    assert result.report["parity"]["passed"]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96), dtype=np.float32)
    out = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
        formula = copy.deepcopy(model)
        formula.backbone.model.rope.periods.copy_(formula.backbone.model.rope.period_candidates()["fp32 formula"])
        wrong = formula(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)
    assert np.abs(out - wrong).max() > 10 * np.abs(out - ref).max()
