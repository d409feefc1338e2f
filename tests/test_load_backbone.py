"""load_backbone by name through the real huggingface_hub cache code, offline, against
independent implementations of the authors' networks (tests/reference)."""

from __future__ import annotations

import warnings

import pytest
import torch

import surgenet
from surgenet.exceptions import CheckpointError, KeyMismatchError, WeightsNotAvailableError
from surgenet.hub import LicenseWarning
from tests.helpers.released import full_dino_checkpoint, teacher_file
from tests.reference import randomize_
from tests.reference.convnextv2_ref import ConvNeXtV2Ref
from tests.reference.metaformer_ref import SurgeNetCAFormerRef
from tests.reference.pvtv2_ref import PVTv2Ref
from tests.reference.vit_ref import dino_v1_ref, dinov2_ref


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
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
        assert _rel_err(a, b) < 1e-4


@pytest.mark.parametrize("ddp_teacher", [True, False])
def test_full_dino_checkpoint_loads_the_teacher(hf_cache, ddp_teacher):
    ref = randomize_(SurgeNetCAFormerRef(), seed=2).eval()
    path = _publish(hf_cache, "surgenetxl-caformer", full_dino_checkpoint(ref.state_dict(), 512, ddp_teacher), full=True)
    bb = surgenet.load_backbone("surgenetxl-caformer", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel_err(bb(x)[3], ref.forward_features(x)[3]) < 1e-4
        assert _rel_err(bb.forward_embedding(x), ref.forward_pooled(x)) < 1e-4


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
    assert _rel_err(ours.flatten(2).transpose(1, 2), tokens) < 1e-4


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
    assert _rel_err(ours.flatten(2).transpose(1, 2), tokens) < 1e-4
    assert _rel_err(cls, ref.forward_tokens(x)[:, 0]) < 1e-4


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
        assert _rel_err(ours, ref.forward_tokens(x)[:, 1:]) < 1e-4


def test_dinov3_meta_layout_loads_strictly(tmp_path):
    net = surgenet.load_backbone("surgenetxl-dinov3-vits16", pretrained=False).model
    meta = {}
    for key, value in net.state_dict().items():
        v = torch.randn_like(value)
        if key.endswith("attn.q_bias"):
            meta[key.replace("q_bias", "qkv.bias")] = torch.cat([v, torch.randn_like(v), torch.randn_like(v)])
            meta[key.replace("q_bias", "qkv.bias_mask")] = torch.ones(3 * v.numel())
            continue
        if key.endswith("attn.v_bias"):
            continue
        key = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        meta[key] = v
    meta["mask_token"] = torch.zeros(1, 384)
    meta["rope_embed.periods"] = torch.ones(16)
    torch.save(meta, tmp_path / "v3.pth")
    bb = surgenet.load_backbone("surgenetxl-dinov3-vits16", weights=tmp_path / "v3.pth")
    sd = bb.model.state_dict()
    assert torch.equal(sd["reg_token"], meta["storage_tokens"])
    assert torch.equal(sd["blocks.3.gamma_2"], meta["blocks.3.ls2.gamma"])
    assert torch.equal(sd["blocks.0.attn.v_bias"], meta["blocks.0.attn.qkv.bias"][768:])


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
    from surgenet import hub

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
