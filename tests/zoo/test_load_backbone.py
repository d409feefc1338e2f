"""load_backbone by name through the real huggingface_hub cache code, offline, against
independent implementations of the authors' networks (tests/reference)."""

from __future__ import annotations

import warnings

import pytest
import torch

import surgenet
from surgenet.exceptions import CheckpointError, KeyMismatchError, WeightsNotAvailableError
from surgenet.zoo.hub import LicenseWarning
from tests.helpers.released import full_dino_checkpoint, teacher_file
from tests.reference import randomize_
from tests.reference.convnextv2_ref import ConvNeXtV2Ref
from tests.reference.dinov3_ref import DINOv3Ref
from tests.reference.metaformer_ref import SurgeNetCAFormerRef
from tests.reference.pvtv2_ref import PVTv2Ref
from tests.reference.vit_ref import dino_v1_ref, dinov2_ref


# The README says "to within 2e-6": the largest error measured over these cases is 1.9e-6 (FP32,
# ConvNeXtV2 stage outputs); 1e-5 leaves room for another CPU's summation order.
REL_TOL = 1e-5


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    return float(((a - b).abs().max() / b.abs().max()).detach())


def _publish(hf_cache, name: str, obj, full: bool = False):
    info = surgenet.model_info(name)
    return hf_cache.add(info["repo_id"], info["full_checkpoint"] if full else info["filename"], obj)


CNN_CASES = [
    ("surgenetxl-caformer", lambda: SurgeNetCAFormerRef(), 512),
    ("surgenet-convnextv2", lambda: ConvNeXtV2Ref(num_classes=0), 768),
    ("surgenet-pvtv2", lambda: PVTv2Ref(num_classes=0), 512),
]


@pytest.mark.parametrize("name,make_ref,dim", CNN_CASES, ids=[c[0] for c in CNN_CASES])
def test_released_teacher_file_reproduces_the_authors_network(hf_cache, name, make_ref, dim):
    ref = randomize_(make_ref(), seed=1).eval()
    _publish(hf_cache, name, teacher_file(ref.state_dict(), dim))
    bb = surgenet.load_backbone(name).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ours, theirs = bb(x), ref.forward_features(x)
    assert [f.shape for f in ours] == [f.shape for f in theirs]
    for stride, a, b in zip((4, 8, 16, 32), ours, theirs):
        assert a.shape[-2:] == (96 // stride, 128 // stride)
        assert _rel_err(a, b) < REL_TOL


@pytest.mark.parametrize("ddp_teacher", [True, False])
def test_full_dino_checkpoint_loads_the_teacher(hf_cache, ddp_teacher):
    ref = randomize_(SurgeNetCAFormerRef(), seed=2).eval()
    path = _publish(hf_cache, "surgenetxl-caformer", full_dino_checkpoint(ref.state_dict(), 512, ddp_teacher), full=True)
    bb = surgenet.load_backbone("surgenetxl-caformer", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel_err(bb(x)[3], ref.forward_features(x)[3]) < REL_TOL
        assert _rel_err(bb.forward_embedding(x), ref.forward_pooled(x)) < REL_TOL


def test_surgenet_flavour_uses_relu_not_starrelu():
    bb = surgenet.load_backbone("surgenetxl-caformer", pretrained=False)
    assert not any("act" in k and ("scale" in k or "bias" in k) for k in bb.state_dict())
    acts = {type(m).__name__ for m in bb.modules() if "ReLU" in type(m).__name__}
    assert acts == {"ReLU"}


def test_dinov1_vit_tokens_match(tmp_path):
    ref = randomize_(dino_v1_ref(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6), 3).eval()
    torch.save(teacher_file(ref.state_dict(), 384), tmp_path / "v1.pth")
    bb = surgenet.load_backbone("surgenetxl-dinov1-vits16", weights=tmp_path / "v1.pth", out_indices=(11,)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = bb(x)[0]
        tokens = ref.forward_tokens(x)[:, 1:]  # patch tokens after the final norm
    assert _rel_err(ours.flatten(2).transpose(1, 2), tokens) < REL_TOL


def test_dinov2_registers_detected_and_tokens_match(tmp_path):
    ref = randomize_(dinov2_ref(num_register_tokens=4, img_size=336, patch_size=14, embed_dim=384,
                                depth=12, num_heads=6), 4).eval()
    torch.save(ref.state_dict(), tmp_path / "v2.pth")
    bb = surgenet.load_backbone("surgenetxl-dinov2-vits14", weights=tmp_path / "v2.pth", out_indices=(5, 11)).eval()
    x = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        ours = bb(x)[1]
        tokens = ref.forward_tokens(x)[:, 1 + 4:]
        cls = bb.forward_embedding(x)
    assert _rel_err(ours.flatten(2).transpose(1, 2), tokens) < REL_TOL
    assert _rel_err(cls, ref.forward_tokens(x)[:, 0]) < REL_TOL


def test_dinov2_register_count_is_read_from_the_keys(tmp_path):
    # the official loader builds a register-free ViT and drops unmatched keys silently
    ref = randomize_(dinov2_ref(num_register_tokens=0, img_size=336, patch_size=14, embed_dim=384,
                                depth=12, num_heads=6), 8).eval()
    torch.save(ref.state_dict(), tmp_path / "noreg.pth")
    bb = surgenet.load_backbone("surgenetxl-dinov2-vits14", weights=tmp_path / "noreg.pth", out_indices=(11,)).eval()
    assert bb.model.num_reg_tokens == 0
    x = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        ours = bb(x)[0].flatten(2).transpose(1, 2)
        assert _rel_err(ours, ref.forward_tokens(x)[:, 1:]) < REL_TOL


def test_surgenetxl_dinov3_matches_the_authors_network_at_any_size(tmp_path):
    # SurgeNetDINO's DINOv3 runs: no storage tokens, a learned (unmasked) key bias, LayerNorm 1e-6
    ref = randomize_(DINOv3Ref(embed_dim=384, depth=12, num_heads=6), 5).eval()
    torch.save(teacher_file(ref.state_dict(), 384), tmp_path / "v3.pth")
    bb = surgenet.load_backbone("surgenetxl-dinov3-vits16", weights=tmp_path / "v3.pth", out_indices=(5, 11)).eval()
    assert bb.model.num_prefix_tokens == 1
    for hw in ((336, 336), (224, 320)):  # RoPE: no position table to interpolate
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            ours = [f.flatten(2).transpose(1, 2) for f in bb(x)]
            blocks = ref.forward_blocks(x)
            cls = bb.forward_embedding(x)
        assert _rel_err(ours[0], blocks[5][:, 1:]) < REL_TOL
        assert _rel_err(ours[1], blocks[11][:, 1:]) < REL_TOL
        assert _rel_err(cls, blocks[11][:, 0]) < REL_TOL  # the class token the DINO head saw


def test_dinov3_storage_tokens_and_masked_key_bias_are_read_from_the_file(tmp_path):
    # Meta's own DINOv3 layout: 4 storage tokens, key bias masked to zero by qkv.bias_mask
    ref = randomize_(DINOv3Ref(embed_dim=384, depth=12, num_heads=6, n_storage_tokens=4, mask_k_bias=True), 6).eval()
    torch.save({"teacher": {f"backbone.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "meta.pth")
    bb = surgenet.load_backbone("surgenetxl-dinov3-vits16", weights=tmp_path / "meta.pth", out_indices=(11,)).eval()
    assert bb.model.num_prefix_tokens == 5
    assert torch.count_nonzero(bb.model.state_dict()["blocks.0.attn.k_bias"]) == 0
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert _rel_err(bb(x)[0].flatten(2).transpose(1, 2), ref.forward_blocks(x)[11][:, 5:]) < REL_TOL


def test_wrong_architecture_lists_missing_and_unexpected_keys(tmp_path):
    torch.save(teacher_file(ConvNeXtV2Ref(num_classes=0).state_dict(), 768), tmp_path / "convnext.pth")
    with pytest.raises(KeyMismatchError) as info:
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path / "convnext.pth")
    err = info.value
    assert "stem.conv.weight" in err.missing
    assert any(".grn." in k for k in err.unexpected)
    assert "missing keys" in str(err) and "unexpected keys" in str(err)


def test_one_missing_tensor_is_an_error_not_a_silent_partial_load(tmp_path):
    sd = SurgeNetCAFormerRef().state_dict()
    del sd["stages.2.4.res_scale1.scale"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(KeyMismatchError, match=r"stages\.2\.blocks\.4\.res_scale1\.scale"):
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path / "partial.pth")


def test_a_transposed_matrix_is_a_shape_error_not_a_silent_reshape(tmp_path):
    sd = SurgeNetCAFormerRef().state_dict()
    sd["stages.2.0.mlp.fc1.weight"] = sd["stages.2.0.mlp.fc1.weight"].t().contiguous()  # same element count
    torch.save(sd, tmp_path / "transposed.pth")
    with pytest.raises(KeyMismatchError, match=r"stages\.2\.blocks\.0\.mlp\.fc1\.weight.*\(320, 1280\)"):
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path / "transposed.pth")


def test_starrelu_caformer_is_rejected(tmp_path):
    torch.save(SurgeNetCAFormerRef(star_relu=True).state_dict(), tmp_path / "star.pth")
    with pytest.raises(KeyMismatchError, match="act1"):
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path / "star.pth")


def test_truncated_file_names_the_file(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(SurgeNetCAFormerRef().state_dict(), good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        surgenet.load_backbone("surgenetxl-caformer", weights=bad)


def test_garbage_is_reported_as_corrupt_not_as_unsafe(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(CheckpointError, match="garbage.pth is truncated or corrupt") as info:
        surgenet.load_backbone("surgenetxl-caformer", weights=bad)
    assert "refuses to unpickle" not in str(info.value)


def test_corrupt_cached_download_names_the_file(hf_cache):
    _publish(hf_cache, "surgenet-pvtv2", b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="SurgeNet_PVTv2_checkpoint_epoch0050_teacher.pth"):
        surgenet.load_backbone("surgenet-pvtv2")


class _Exploit:
    def __reduce__(self):
        return (eval, ("__import__('os').environ.__setitem__('SURGENET_PWNED', '1')",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("SURGENET_PWNED", raising=False)
    torch.save({"stem.conv.weight": torch.zeros(1), "payload": _Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path / "evil.pth")
    import os

    assert "SURGENET_PWNED" not in os.environ


def test_offline_without_cache_says_how_to_fix(hf_cache):
    with pytest.raises(WeightsNotAvailableError) as info:
        surgenet.load_backbone("surgenet-rarp-caformer")
    msg = str(info.value)
    assert "TimJaspersTue/SurgeNetModels" in msg and "RARP_checkpoint_epoch0050_teacher.pth" in msg
    assert "weights=" in msg and "surgenet download" in msg


def test_revision_pinning_uses_that_snapshot(hf_cache):
    ref = randomize_(SurgeNetCAFormerRef(), seed=5)
    info = surgenet.model_info("surgenet-cholec-caformer")
    hf_cache.add(info["repo_id"], info["filename"], teacher_file(ref.state_dict(), 512), revision="v1.0")
    with pytest.raises(WeightsNotAvailableError):
        surgenet.load_backbone("surgenet-cholec-caformer")  # main is not cached
    bb = surgenet.load_backbone("surgenet-cholec-caformer", revision="v1.0")
    assert torch.equal(bb.model.stem.conv.weight, ref.state_dict()["downsample_layers.0.conv.weight"])


def test_license_warning_is_shown_once(hf_cache, monkeypatch):
    from surgenet.zoo import hub

    monkeypatch.setattr(hub, "_warned_licenses", set())
    ref = SurgeNetCAFormerRef()
    _publish(hf_cache, "surgenet-small-caformer", teacher_file(ref.state_dict(), 512))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        surgenet.load_backbone("surgenet-small-caformer")
        surgenet.load_backbone("surgenet-small-caformer")
    license_warnings = [w for w in caught if issubclass(w.category, LicenseWarning)]
    assert len(license_warnings) == 1
    assert "non-commercial" in str(license_warnings[0].message)


def test_safetensors_and_saved_folder_round_trip(tmp_path):
    from safetensors.torch import save_file

    bb = randomize_(surgenet.load_backbone("surgenet-pvtv2", pretrained=False), seed=6).eval()
    save_file(bb.model.state_dict(), tmp_path / "pvt.safetensors")
    folder = tmp_path / "saved"
    folder.mkdir()
    save_file({f"model.{k}": v for k, v in bb.model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text('{"arch": "pvt_v2_b2"}')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = bb(x)
        for weights in (tmp_path / "pvt.safetensors", folder):
            got = surgenet.load_backbone("surgenet-pvtv2", weights=weights).eval()(x)
            assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_folder_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"arch": "convnextv2_tiny"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="convnextv2_tiny"):
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path)


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        surgenet.load_backbone("surgenetxl-caformer", weights=tmp_path / "nope.pth")
